"""The greeter plugin: the smallest plugin that uses another plugin's API."""
