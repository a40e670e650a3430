"""The services directory believes a heartbeat only on its own key, stays bounded, and a bad
metrics string costs its sender its metrics, not everyone their /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

import mesh.directory as directory_module
from contracts.platform import Heartbeat
from mesh.bus.message import Message
from mesh.directory import ServiceDirectory
from mesh.names import heartbeat_key
from services.server.metrics import exposition


def beat(service: str = "server", instance: str = "server-a", **changes: Any) -> Heartbeat:
    fields: dict[str, Any] = dict(
        service=service, instance=instance, host="h", pid=1, started_at=datetime.now(UTC),
        uptime_s=1.0, interval_s=5.0, mesh_version="0.1.0", state="running",
        transport="memory", plugins=[])
    return Heartbeat(**{**fields, **changes})


async def deliver(directory: ServiceDirectory, body: Heartbeat | bytes, key: str) -> None:
    raw = body if isinstance(body, bytes) else body.model_dump_json().encode()
    await directory._on_beat(SimpleNamespace(message=Message(raw, routing_key=key)))  # type: ignore[arg-type]


def directory() -> ServiceDirectory:
    return ServiceDirectory(SimpleNamespace(exchange="mesh"), "server-me")  # type: ignore[arg-type]


async def test_a_heartbeat_counts_only_on_its_own_key() -> None:
    known = directory()
    await deliver(known, beat(), heartbeat_key("server", "server-a"))
    # an agent, allowed by the broker to publish heartbeat.agent.*, claims to be a server
    await deliver(known, beat(instance="server-fake"), heartbeat_key("agent", "agent-1"))
    await deliver(known, beat(instance="server-fake"), heartbeat_key("agent", "server-fake"))
    assert list(known.beats) == ["server-a"]


@pytest.mark.parametrize("body", [
    b"not json", b"{}", b"[" * 50_000,
    beat().model_dump_json().replace('"server"', '"mainframe"', 1).encode(),
    beat().model_dump_json().replace('"server-a"', '"a.b"').encode(),
    beat().model_dump_json().replace('"interval_s":5.0', '"interval_s":1e309').encode(),
])
async def test_malformed_heartbeats_are_dropped(body: bytes) -> None:
    known = directory()
    await deliver(known, body, heartbeat_key("server", "server-a"))
    assert known.beats == {}


async def test_bad_metrics_are_dropped_and_metrics_still_serve() -> None:
    known = directory()
    await deliver(known, beat(instance="w-1", service="worker", metrics="bad metric{{{ 1\n"),
                  heartbeat_key("worker", "w-1"))
    await deliver(known, beat(instance="w-2", service="worker",
                              metrics="# TYPE jobs counter\njobs_total 3.0\n"),
                  heartbeat_key("worker", "w-2"))
    assert known.beats["w-1"][0].metrics is None  # the beat itself still counts
    text = exposition(known, "server", "server-me").decode()
    assert 'jobs_total{instance="w-2",service="worker"} 3.0' in text


async def test_the_directory_is_bounded_and_forgets_the_long_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(directory_module, "MAX_INSTANCES", 3)
    known = directory()
    for i in range(5):
        await deliver(known, beat(instance=f"s-{i}"), heartbeat_key("server", f"s-{i}"))
    assert sorted(known.beats) == ["s-0", "s-1", "s-2"]
    long_ago = time.monotonic() - directory_module.FORGET_AFTER_S - 60
    known.beats["s-0"] = (known.beats["s-0"][0], long_ago)  # silent for over an hour
    await deliver(known, beat(instance="s-3"), heartbeat_key("server", "s-3"))
    assert sorted(known.beats) == ["s-1", "s-2", "s-3"]
