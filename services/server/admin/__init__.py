"""The admin API (FastAPI, on the server): services, plugins, settings, contracts, RPC."""
