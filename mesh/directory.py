"""Every live service instance, from the heartbeats they publish (kept on the server)."""

from __future__ import annotations

import time

import structlog
from pydantic import ValidationError

from contracts.platform import Heartbeat
from mesh import names
from mesh.bus.message import Delivery, QueueSpec
from mesh.bus.transport import Transport

log = structlog.get_logger("mesh.directory")
MISSED_BEATS = 3  # an instance silent for this many intervals is gone


class ServiceDirectory:
    def __init__(self, transport: Transport, instance: str) -> None:
        self.transport = transport
        self.queue = names.heartbeat_queue(transport.exchange, instance)
        self.beats: dict[str, tuple[Heartbeat, float]] = {}  # instance → (beat, received at)

    async def start(self) -> None:
        await self.transport.declare_queue(QueueSpec(self.queue, (names.HEARTBEAT_PATTERN,),
                                                     exclusive=True))
        await self.transport.consume(self.queue, self._on_beat, prefetch=0, no_ack=True)

    async def _on_beat(self, delivery: Delivery) -> None:
        try:
            beat = Heartbeat.model_validate_json(delivery.message.body)
        except ValidationError:
            log.warning("directory.bad_heartbeat", key=delivery.message.routing_key)
            return
        self.beats[beat.instance] = (beat, time.monotonic())

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
