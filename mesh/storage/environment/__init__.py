"""The Alembic environment (env.py) and revision template mesh uses for every plugin."""
