"""Attacks against a running mesh, each measured against the same measurement without it.

A server and a client service run as processes of their own on RabbitMQ (a fresh exchange);
the attacks come from this process:

- **sign-in flood**: 80 bogus sign-ins kept in flight over the admin API, each from an address
  of its own (127.0.1.x) with unknown usernames and wrong passwords; measured: a real sign-in
  (median of `--repeat`), alone and under the flood. Goal: at most 3x.
- **subscription churn**: one signed-in device subscribes to and unsubscribes from 200
  distinct selectors in turn, new ones each round; measured: an admin write (admin invoke of
  `tutorial.add_string_int`), alone and under the churn. Goal: at most 3x.
- **big body**: a 300 MB JSON body, streamed, to an admin route without a token; measured: the
  answer (413) and how much the server's resident memory grew (peak, Linux `VmHWM` after
  resetting it). Goal: under 20 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.broker import delete_topology
from bench.fanout import free_port
from bench.procs import ServerProcess, server_process, wait_until_healthy

NAME = "abuse"
HELP = "attacks (sign-in flood, subscription churn, a 300 MB body) against the same without"
TOKEN = "bench-admin-token-" + uuid.uuid4().hex
PASSWORD = "bench admin password " + uuid.uuid4().hex[:8]


ATTACKS = ("sign_in_flood", "churn", "big_body")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attackers", type=int, default=80,
                        help="bogus sign-ins kept in flight (default: %(default)s)")
    parser.add_argument("--selectors", type=int, default=200,
                        help="distinct selectors per churn round (default: %(default)s)")
    parser.add_argument("--body-mb", type=int, default=300, help="(default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timings per measurement; the median is reported (default: 5)")
    parser.add_argument("--only", choices=ATTACKS, action="append",
                        help="run only this attack (repeatable; default: all)")


@contextlib.asynccontextmanager
async def running_mesh(url: str) -> AsyncIterator[tuple[ServerProcess, str, str]]:
    """A server and a client process; yields the server, the admin URL and the device URL."""
    exchange = f"bench-abuse-{uuid.uuid4().hex[:8]}"
    data = Path(tempfile.mkdtemp(prefix="mesh-bench-abuse-"))
    admin_port, client_port = free_port(), free_port()
    env = {**os.environ, "MESH_BROKER_URL": url, "MESH_EXCHANGE": exchange,
           "MESH_LOG_LEVEL": "WARNING", "MESH_ADMIN_TOKEN": TOKEN,
           "MESH_ADMIN_PASSWORD": PASSWORD, "MESH_ADMIN_PORT": str(admin_port),
           "MESH_CLIENT_PORT": str(client_port), "MESH_HEARTBEAT_INTERVAL": "1"}
    try:
        with server_process("server", [sys.executable, "-m", "mesh", "run", "server"],
                            {**env, "MESH_DATA_DIR": str(data / "server")}) as server, \
                server_process("client", [sys.executable, "-m", "mesh", "run", "client"],
                               {**env, "MESH_DATA_DIR": str(data / "client")}) as client:
            await wait_until_healthy(server, data / "server", "server")
            await wait_until_healthy(client, data / "client", "client")
            yield server, f"http://127.0.0.1:{admin_port}", f"ws://127.0.0.1:{client_port}/ws"
    finally:
        await delete_topology(url, exchange, [])
        shutil.rmtree(data, ignore_errors=True)


async def median_ms(repeat: int, work: Callable[[], Awaitable[None]]) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        timings.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    return statistics.median(timings)


async def under(attack: Callable[[asyncio.Event], Awaitable[Any]], repeat: int,
                work: Callable[[], Awaitable[None]], warmup: float = 1.0) -> float:
    """`work`'s median time while `attack` runs (it runs until the event is set)."""
    stop = asyncio.Event()
    running = asyncio.ensure_future(attack(stop))
    try:
        await asyncio.sleep(warmup)
        return await median_ms(repeat, work)
    finally:
        stop.set()
        await running


async def sign_in_flood(admin_url: str, attackers: int, repeat: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=admin_url, timeout=60) as real:
        async def sign_in() -> None:
            answer = await real.post("/api/v1/sign-in", json={"username": "admin",
                                                              "password": PASSWORD})
            answer.raise_for_status()

        await sign_in()  # the admin works from here
        alone = await median_ms(repeat, sign_in)
        answers: dict[int, int] = {}

        async def flood(stop: asyncio.Event) -> None:
            async def attacker(i: int) -> None:
                transport = httpx.AsyncHTTPTransport(local_address=f"127.0.1.{i % 250 + 1}")
                async with httpx.AsyncClient(base_url=admin_url, transport=transport,
                                             timeout=60) as http:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        answer = await http.post("/api/v1/sign-in", json={
                            "username": f"guess-{i}-{n % 7}", "password": f"wrong {n}"})
                        answers[answer.status_code] = answers.get(answer.status_code, 0) + 1

            await asyncio.gather(*(attacker(i) for i in range(attackers)))

        attacked = await under(flood, repeat, sign_in)
    return {"attackers": attackers, "alone_ms": round(alone, 1),
            "attacked_ms": round(attacked, 1), "ratio": round(attacked / alone, 2),
            "bogus_answers": {str(k): v for k, v in sorted(answers.items())}}


async def churn(admin_url: str, ws_url: str, selectors: int, repeat: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=admin_url, timeout=60, headers=headers) as admin:
        async def write() -> None:
            answer = await admin.post("/api/v1/rpc/tutorial/add_string_int",
                                      json={"string1": "bench", "int1": 1})
            answer.raise_for_status()

        await write()
        alone = await median_ms(repeat, write)
        refused = 0

        async def churning(stop: asyncio.Event) -> None:
            nonlocal refused
            async with websockets.connect(ws_url) as device:
                await device.send(json.dumps({"type": "sign_in", "id": 0, "token": TOKEN}))
                await device.recv()
                async def answer(frame: dict[str, Any]) -> dict[str, Any]:
                    await device.send(json.dumps(frame))
                    while True:
                        got = json.loads(await device.recv())
                        if got.get("id") == frame["id"] and got["type"] in (
                                "subscribed", "unsubscribed", "error"):
                            return got  # type: ignore[no-any-return]

                round_ = 0
                while not stop.is_set():
                    round_ += 1
                    for n in range(selectors):
                        sub = f"s{round_}-{n}"
                        got = await answer({"type": "subscribe", "id": sub,
                                            "topic": "tutorial.string_ints",
                                            "selector": {"prefix": f"p{round_}-{n}"}})
                        if got["type"] == "error":
                            refused += 1
                            continue
                        await answer({"type": "unsubscribe", "id": f"u{sub}",
                                      "subscription": sub})

        attacked = await under(churning, repeat, write, warmup=3.0)
        health = await admin.get(ws_url.replace("ws://", "http://").replace("/ws", "/healthz"))
    return {"selectors_per_round": selectors, "alone_ms": round(alone, 1),
            "attacked_ms": round(attacked, 1), "ratio": round(attacked / alone, 2),
            "refused_subscribes": refused, "upstream_after": health.json()["upstream"]}


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> int:
    """Reset the process's peak resident memory (Linux); its resident memory now, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_kib(pid, "VmRSS")


async def big_body(admin_url: str, pid: int, megabytes: int) -> dict[str, Any]:
    before = reset_peak(pid)
    chunk = b"[" + b"1," * (512 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(megabytes):
            yield chunk

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=admin_url, timeout=120) as http:
        try:
            answer = await http.put("/api/v1/plugins/tutorial/settings", content=body(),
                                    headers={"Content-Type": "application/json"})
            status = answer.status_code
        except httpx.HTTPError:  # the server answered and closed while we still sent
            status = 413
    peak = rss_kib(pid, "VmHWM")
    return {"megabytes": megabytes, "status": status,
            "seconds": round(time.perf_counter() - started, 2),
            "growth_mb": round(max(0, peak - before) / 1024, 1)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    only = set(args.only or ATTACKS)
    report: dict[str, Any] = {}
    async with running_mesh(args.url) as (server, admin_url, ws_url):
        if "sign_in_flood" in only:
            report["sign_in_flood"] = await sign_in_flood(admin_url, args.attackers, args.repeat)
        if "churn" in only:
            report["churn"] = await churn(admin_url, ws_url, args.selectors, args.repeat)
        if "big_body" in only:
            report["big_body"] = await big_body(admin_url, server.process.pid, args.body_mb)
    return report


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(report))
        return 0
    if flood := report.get("sign_in_flood"):
        print(f"real sign-in: {flood['alone_ms']:.1f} ms alone, {flood['attacked_ms']:.1f} ms "
              f"under {flood['attackers']} bogus sign-ins ({flood['ratio']:.2f}x; goal <= 3x); "
              f"bogus answers {flood['bogus_answers']}")
    if churned := report.get("churn"):
        print(f"admin write: {churned['alone_ms']:.1f} ms alone, {churned['attacked_ms']:.1f} ms"
              f" under churn of {churned['selectors_per_round']} selectors "
              f"({churned['ratio']:.2f}x; goal <= 3x); {churned['refused_subscribes']} "
              f"subscribes refused, {churned['upstream_after']} selectors upstream after")
    if body := report.get("big_body"):
        print(f"{body['megabytes']} MB unauthenticated body: {body['status']} in "
              f"{body['seconds']} s, server grew {body['growth_mb']} MB (goal < 20 MB)")
    return 0
