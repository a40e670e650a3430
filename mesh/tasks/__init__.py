"""Durable tasks: declared in contracts, queued on RabbitMQ, run by the worker service.

docs/tasks.md is the guide; docs/protocol.md §14 the wire format.
"""
