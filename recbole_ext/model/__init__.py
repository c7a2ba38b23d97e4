"""recbole_ext models, one per module, in ``<type>_recommender/<name.lower()>.py`` (RecBole's layout)."""
