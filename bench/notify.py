"""One notification to N followers, against the same fan-out as a topic update.

N WebSocket devices on one client service (a process of its own, as in the fanout bench), all
signed in and watching the tutorial's topic. Each round sends the tutorial's `int1_high`
notification to the rows group's followers (stored by the in-process server, then pushed) and
times send → the last device holding it; then notifies the topic and times notify → the last
device holding the new version. It also counts the database rows one notification writes, to
followers and to N users named one by one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

import websockets
from mesh_tutorial.contract import Int1Crossed, StringIntFields, TutorialContract
from sqlalchemy import func, select

from bench.fanout import mesh_side
from bench.stats import percentile
from mesh.admin_credentials import admin_token
from mesh.identity import ADMIN_TOKEN_USER
from mesh.log import configure_logging
from mesh.notification import to_followers, to_users
from mesh.platform.models import SCHEMA, NotificationRecipientRow
from services.server import ServerService

NAME = "notify"
HELP = "one notification to 1,000 followers against the same fan-out as a topic update"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=1000, help="devices (default: 1000)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="notifications and topic updates timed (default: %(default)s)")


class Devices:
    """N devices; each records when it got each notification id and each topic version."""

    def __init__(self, count: int) -> None:
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.notified = [0] * count
        self.versions = [0] * count
        self.seen_at = [0.0] * count
        self.kind, self.target, self.reached, self.started = "", 0, 0, 0.0
        self.complete = asyncio.Event()

    async def connect(self, url: str, first_frames: list[str]) -> None:
        async def one(index: int) -> None:
            sock = await websockets.connect(url, max_size=2**24, open_timeout=60,
                                            ping_interval=None)
            self.sockets.append(sock)
            for frame in first_frames:
                await sock.send(frame)
            self.readers.append(asyncio.get_running_loop().create_task(self._read(sock, index)))

        count = len(self.notified)
        for start in range(0, count, 200):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 200, count))))

    async def _read(self, sock: Any, index: int) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in sock:
                frame = json.loads(raw)
                if frame["type"] == "notification":
                    seen, value = self.notified, int(frame["notification"]["id"])
                elif frame["type"] in ("snapshot", "update"):
                    seen, value = self.versions, int(frame["version"])
                else:
                    continue
                seen[index] = max(seen[index], value)
                kind = "notification" if seen is self.notified else "topic"
                if kind == self.kind and value >= self.target > 0 and \
                        self.seen_at[index] < self.started:
                    self.seen_at[index] = time.perf_counter()
                    self.reached += 1
                    if self.reached == len(self.notified):
                        self.complete.set()

    def expect(self, kind: str, target: int) -> None:
        self.kind, self.target, self.reached = kind, target, 0
        self.started = time.perf_counter()
        self.complete.clear()

    async def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(Exception):
                await sock.close()
        for reader in self.readers:
            reader.cancel()


async def rows_written(server: ServerService, notification_id: int) -> int:
    assert server.database is not None
    async with server.database.session(SCHEMA) as session:
        recipients = await session.scalar(select(func.count()).select_from(
            NotificationRecipientRow).where(
                NotificationRecipientRow.notification_id == notification_id))
        return 1 + int(recipients or 0)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    async with mesh_side(args.url) as (server, ws_url, _):
        row = await server.rpc_caller.call(  # as the admin does: the rows need a permission
            TutorialContract.add_string_int, StringIntFields(string1="pump", int1=1),
            caller="cli", user=ADMIN_TOKEN_USER, session=server.identity.admin_session)
        ctx = server.host.records["tutorial"].ctx
        assert ctx is not None
        provider = server.observables.provider(TutorialContract.string_ints)
        assert provider is not None
        token, _ = admin_token(server.settings)
        devices = Devices(args.devices)
        await devices.connect(ws_url, [
            json.dumps({"type": "sign_in", "id": "hello", "token": token}),
            json.dumps({"type": "subscribe", "id": "rows", "topic": "tutorial.string_ints",
                        "selector": {}})])
        payload = Int1Crossed(id=row.id, string1=row.string1, int1=100, threshold=100)
        notified, updated = [], []
        try:
            async with asyncio.timeout(120):
                while not all(devices.versions):
                    await asyncio.sleep(0.05)
            sent = None
            for _ in range(args.rounds):
                devices.expect("notification", (sent.id if sent else 0) + 1)
                sent = await ctx.send_notification(TutorialContract.int1_high, payload,
                                                   to=to_followers())
                await asyncio.wait_for(devices.complete.wait(), 60)
                notified.append((max(devices.seen_at) - devices.started) * 1000)
                await asyncio.sleep(0.05)
                devices.seen_at = [0.0] * args.devices
                devices.expect("topic", time.time_ns())
                await provider.notify()
                await asyncio.wait_for(devices.complete.wait(), 60)
                updated.append((max(devices.seen_at) - devices.started) * 1000)
                devices.seen_at = [0.0] * args.devices
                await asyncio.sleep(0.05)
            assert sent is not None
            to_followers_rows = await rows_written(server, sent.id)
            named = await ctx.send_notification(
                TutorialContract.int1_high, payload,
                to=to_users(*(f"user{i}" for i in range(args.devices))))
            to_named_rows = await rows_written(server, named.id)
        finally:
            await devices.close()
    notified.sort()
    updated.sort()
    p50 = percentile(notified, 50)
    return {"devices": args.devices, "rounds": args.rounds,
            "payload_bytes": len(payload.model_dump_json()),
            "notification_p50_ms": round(p50, 2),
            "notification_p99_ms": round(percentile(notified, 99), 2),
            "topic_p50_ms": round(percentile(updated, 50), 2),
            "topic_p99_ms": round(percentile(updated, 99), 2),
            "p50_ratio_notification_over_topic": round(p50 / percentile(updated, 50), 2),
            "rows_to_followers": to_followers_rows, "rows_to_named_users": to_named_rows}


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    report = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"one notification to {report['devices']} followers' devices "
          f"({report['payload_bytes']} B payload), {report['rounds']} rounds; "
          "latency = send → last device")
    print(f"notification  p50 {report['notification_p50_ms']:.1f} ms  "
          f"p99 {report['notification_p99_ms']:.1f} ms")
    print(f"topic update  p50 {report['topic_p50_ms']:.1f} ms  "
          f"p99 {report['topic_p99_ms']:.1f} ms")
    print(f"notification / topic p50: {report['p50_ratio_notification_over_topic']:.2f}")
    print(f"database rows per notification: {report['rows_to_followers']} to the followers, "
          f"{report['rows_to_named_users']} to {report['devices']} users named one by one")
    return 0
