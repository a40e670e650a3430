"""The ${name} plugin.

Importing the package runs nothing: mesh reads the manifest, plugin.toml, beside it.
"""
