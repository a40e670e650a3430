"""The platform's own contracts: pure data, importable by any service, plugin or outside client."""
