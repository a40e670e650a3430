"""A service's tracer provider from its settings and the standard OTEL_* variables
(mesh/tracing/setup.py)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from mesh.config import MeshSettings
from mesh.tracing.setup import exporter, resource, start_tracing


@pytest.fixture(autouse=True)
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER",
                 "OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_the_resource_names_the_service_and_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    attributes = resource("worker", "worker-a-1", "0.1.0").attributes
    assert (attributes["service.name"], attributes["service.instance.id"],
            attributes["service.version"]) == ("mesh-worker", "worker-a-1", "0.1.0")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    attributes = resource("worker", "worker-a-1", "0.1.0").attributes
    assert attributes["service.name"] == "shop"
    assert attributes["deployment.environment"] == "prod"
    assert attributes["service.instance.id"] == "worker-a-1"


def test_the_endpoint_is_mesh_s_else_the_standard_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def endpoint(settings: MeshSettings) -> str:
        made = exporter(settings)
        assert made is not None
        return str(made._endpoint)  # type: ignore[attr-defined]

    assert endpoint(MeshSettings(otlp_endpoint="http://collector:4318/")) == \
        "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")
    assert endpoint(MeshSettings()) == "http://other:4318/v1/traces"
    assert endpoint(MeshSettings(otlp_endpoint="http://mine:4318")) == \
        "http://mine:4318/v1/traces"


def test_the_exporter_and_sampler_follow_the_otel_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert isinstance(exporter(MeshSettings()), ConsoleSpanExporter)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporter(MeshSettings()) is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="otlp, console, none"):
        exporter(MeshSettings())
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    setup = start_tracing(MeshSettings(), "server", "s1", version="0")
    assert setup.provider.sampler is ALWAYS_OFF
    setup.shutdown()


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MeshSettings().tracing is False
    monkeypatch.setenv("MESH_TRACING", "true")
    monkeypatch.setenv("MESH_OTLP_ENDPOINT", "http://collector:4318")
    settings = MeshSettings()
    assert (settings.tracing, settings.otlp_endpoint) == (True, "http://collector:4318")
