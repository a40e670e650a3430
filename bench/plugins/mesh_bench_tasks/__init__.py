"""The tasks `python -m bench tasks` runs on a mesh worker (not a bundled plugin)."""
