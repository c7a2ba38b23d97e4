"""Sequential recommenders of recbole_ext."""
