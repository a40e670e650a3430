"""Every live service instance, from the heartbeats they publish (kept on the server).

A heartbeat is believed only on its own routing key (`heartbeat.<service>.<instance>`, which
the broker's ACL lets only that kind publish), the directory is bounded and forgets instances
silent for long, and a heartbeat's metrics that do not parse are dropped with a warning: one
bad sender must never list a fake service or break /metrics for everyone.
"""

from __future__ import annotations

import time

import structlog
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from contracts.platform import Heartbeat
from mesh import names
from mesh.bus.message import Delivery, QueueSpec
from mesh.bus.transport import Transport

log = structlog.get_logger("mesh.directory")
MISSED_BEATS = names.MISSED_BEATS  # an instance silent for this many intervals is gone
FORGET_AFTER_S = 3600.0  # a gone instance is listed (as gone) this long, then forgotten
MAX_INSTANCES = 10_000  # beyond this, heartbeats of instances not yet listed are dropped


class ServiceDirectory:
    def __init__(self, transport: Transport, instance: str) -> None:
        self.transport = transport
        self.queue = names.heartbeat_queue(transport.exchange, instance)
        self.beats: dict[str, tuple[Heartbeat, float]] = {}  # instance → (beat, received at)
        self._pruned = time.monotonic()

    async def start(self) -> None:
        await self.transport.declare_queue(QueueSpec(self.queue, (names.HEARTBEAT_PATTERN,),
                                                     exclusive=True))
        await self.transport.consume(self.queue, self._on_beat, prefetch=0, no_ack=True)

    async def _on_beat(self, delivery: Delivery) -> None:
        key = delivery.message.routing_key
        try:
            beat = Heartbeat.model_validate_json(delivery.message.body)
        except ValidationError:
            log.warning("directory.bad_heartbeat", key=key[:200])
            return
        if key != names.heartbeat_key(beat.service, beat.instance):
            log.warning("directory.heartbeat_off_its_key", key=key[:200],
                        service=beat.service, instance=beat.instance)
            return
        if beat.metrics is not None and not _parses(beat.metrics):
            log.warning("directory.bad_metrics", instance=beat.instance)
            beat = beat.model_copy(update={"metrics": None})
        now = time.monotonic()
        self._prune(now)
        if beat.instance not in self.beats and len(self.beats) >= MAX_INSTANCES:
            log.warning("directory.full", instance=beat.instance, size=len(self.beats))
            return
        self.beats[beat.instance] = (beat, now)

    def _prune(self, now: float) -> None:
        if now - self._pruned < 60 and len(self.beats) < MAX_INSTANCES:
            return
        self._pruned = now
        for instance, (beat, at) in list(self.beats.items()):
            if self.status(beat, at) == "gone" and now - at > FORGET_AFTER_S:
                del self.beats[instance]

    def status(self, beat: Heartbeat, received: float) -> str:
        if beat.state == "stopping":
            return "gone"
        silent = time.monotonic() - received
        return "up" if silent <= beat.interval_s * MISSED_BEATS else "gone"

    def instances(self) -> list[tuple[Heartbeat, str, float]]:
        """(latest heartbeat, "up" or "gone", seconds since it arrived), by service and id."""
        now = time.monotonic()
        rows = [(beat, self.status(beat, at), now - at) for beat, at in self.beats.values()]
        return sorted(rows, key=lambda r: (r[0].service, r[0].instance))


def _parses(metrics: str) -> bool:
    try:
        for family in text_string_to_metric_families(metrics):
            for _ in family.samples:
                pass
    except Exception:  # the parser raises ValueError and others on malformed text
        return False
    return True
