"""The W3C trace context on the wire (mesh/tracing/propagation.py): what is injected comes
back out, and whatever else arrives — garbage, huge, the wrong type or version — is ignored,
never an error."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from mesh.tracing import propagation

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def parent_of(carrier: dict[str, Any]) -> trace.SpanContext | None:
    span_context = trace.get_current_span(propagation.extract(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


def test_inject_then_extract_is_the_same_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    headers: dict[str, Any] = {"x-mesh-caller": "client"}
    with tracer.start_as_current_span("call") as span:
        propagation.inject(headers)
    assert headers[propagation.TRACEPARENT].startswith("00-")
    extracted = parent_of(headers)
    assert extracted is not None and extracted.is_remote
    assert (extracted.trace_id, extracted.span_id) == (span.get_span_context().trace_id,
                                                       span.get_span_context().span_id)


def test_nothing_is_injected_outside_a_span() -> None:
    headers: dict[str, Any] = {}
    propagation.inject(headers)
    assert headers == {}


def test_amqp_bytes_and_tracestate_are_read() -> None:
    extracted = parent_of({"traceparent": VALID.encode(), "tracestate": b"vendor=abc"})
    assert extracted is not None
    assert extracted.trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert extracted.trace_state.get("vendor") == "abc"


def test_a_later_version_with_more_fields_is_read() -> None:
    assert parent_of({"traceparent": "01" + VALID[2:] + "-what-comes-next"}) is not None


@pytest.mark.parametrize("value", [
    "garbage",
    "",
    "00-" + "x" * 32 + "-b7ad6b7169203331-01",
    "ff" + VALID[2:],  # version ff is forbidden
    VALID + "-extra",  # version 00 has exactly four fields
    "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # all-zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # all-zero span id
    VALID.upper(),
    VALID + " " * 10_000,  # huge
    "00-" + "a" * 100_000,
    12,
    None,
    ["00", VALID],
    {"traceparent": VALID},
    b"\xff\xfe" * 40,
])
def test_anything_invalid_starts_a_new_trace(value: Any) -> None:
    assert parent_of({"traceparent": value}) is None


def test_a_bad_tracestate_does_not_lose_the_parent() -> None:
    for state in ("=,=,=", "x" * 100_000, 7, b"\x00"):
        extracted = parent_of({"traceparent": VALID, "tracestate": state})
        assert extracted is not None and extracted.span_id == 0xb7ad6b7169203331
