"""The W3C trace context on the wire: `traceparent` and `tracestate`, as AMQP headers of
those names and as fields of a device's request frames.

Whatever arrives is untrusted: a value that is not text, longer than any valid one, or not a
valid trace context is ignored (the work starts a trace of its own), never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# A version-00 traceparent has 55 characters, later versions may add fields; the W3C caps a
# tracestate at 32 members of at most 256 characters. Anything longer is not worth parsing.
MAX_TRACEPARENT = 256
MAX_TRACESTATE = 8192

_propagator = TraceContextTextMapPropagator()


class _TextGetter(Getter[Mapping[str, Any]]):
    """Headers or frame fields as the propagator wants them: text only (AMQP may hand strings
    over as bytes), and only up to the longest value that can be valid."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        limit = MAX_TRACEPARENT if key == TRACEPARENT else MAX_TRACESTATE
        if not isinstance(value, str) or len(value) > limit:
            return None
        return [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key in (TRACEPARENT, TRACESTATE) if key in carrier]


_getter = _TextGetter()


def inject(headers: MutableMapping[str, Any], context: Context | None = None) -> None:
    """Write the current (or the given) trace context into `headers`; nothing when there is
    no valid span in it."""
    _propagator.inject(headers, context=context)


def extract(carrier: Mapping[str, Any]) -> Context:
    """The trace context `carrier` (message headers, a device frame) names; an empty context
    (a span started in it begins a new trace) when it names none that is valid."""
    return _propagator.extract(carrier, Context(), getter=_getter)
