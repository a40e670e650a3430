"""The identity plugin: the platform's bundled identity provider. Importing it runs nothing."""
