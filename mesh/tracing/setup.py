"""A service's tracer provider, made once from its settings and the standard OTEL_* variables.

Each service has a provider of its own, so that the four services `mesh up` runs in one
process still export as four (`service.name` = `mesh-<kind>`, `service.instance.id` = the
instance). None becomes OpenTelemetry's global provider: FastAPI (0.16x) traces every HTTP
request and WebSocket connection by itself as soon as there is one, which is not ours to
switch on. Spans a plugin makes with OpenTelemetry's API go to the global provider, when the
deployment sets one up; they are children of mesh's span all the same (it is current).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from mesh.config import MeshSettings
from mesh.tracing.middleware import Tracing

EXPORTERS = ("otlp", "console", "none")


@dataclass
class TracingSetup:
    """The provider and the link that uses it; `shutdown` exports what is still buffered."""

    provider: TracerProvider
    middleware: Tracing

    def shutdown(self) -> None:
        """Blocking (the exporter's last batch goes out): call it from a thread."""
        self.provider.shutdown()


def resource(kind: str, instance: str, version: str) -> Resource:
    """Who exports: OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES) win over `mesh-<kind>`."""
    attributes: dict[str, str] = {"service.instance.id": instance,
                                  "service.namespace": "mesh",
                                  "service.version": version}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = f"mesh-{kind}"
    return Resource.create(attributes)


def exporter(settings: MeshSettings) -> SpanExporter | None:
    """OTEL_TRACES_EXPORTER picks it: `otlp` (OTLP over HTTP, the default), `console`, or
    `none` (spans are made, then dropped)."""
    name = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: mesh exports with "
                         f"{', '.join(EXPORTERS)}")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = settings.otlp_endpoint
    # MESH_OTLP_ENDPOINT is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT; unset, the exporter
    # reads the OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables itself.
    return OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None)


def start_tracing(settings: MeshSettings, kind: str, instance: str, *, version: str
                  ) -> TracingSetup:
    """The provider (its sampler from OTEL_TRACES_SAMPLER, its batching from OTEL_BSP_*) and
    the middleware link for one service of mesh `version`."""
    provider = TracerProvider(resource=resource(kind, instance, version))
    span_exporter = exporter(settings)
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return TracingSetup(provider, Tracing(provider.get_tracer("mesh", version)))
