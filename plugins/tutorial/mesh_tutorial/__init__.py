"""The tutorial plugin: docs/tutorial.md builds it, step by step."""
