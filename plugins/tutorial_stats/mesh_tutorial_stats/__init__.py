"""A plugin that uses the tutorial's server API (docs/tutorial.md, step 9)."""
