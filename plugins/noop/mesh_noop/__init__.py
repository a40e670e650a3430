"""The noop plugin. Importing the package runs nothing: contract and API are plain modules."""
