"""Observable topics: providers on the server, a cache with fan-out on the client service."""
