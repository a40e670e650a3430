"""OpenTelemetry tracing, as a link of the middleware chain (mesh/invoke.py).

Off by default (`MESH_TRACING`), and then nothing here is imported: the link is not in the
chain, and mesh runs without the OpenTelemetry packages (the `tracing` extra). On, a service
makes its tracer provider and exporter once (`setup.py`), and the `Tracing` link
(`middleware.py`) carries the W3C `traceparent` and `tracestate` headers (`propagation.py`)
across every call, enqueue and handler, so one trace follows a device's frame through the
gateway, the RPCs and tasks it causes, and back. docs/operations.md ("Tracing") is the
reference.
"""
