"""General (non-sequential) recommenders of recbole_ext."""
