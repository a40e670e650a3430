"""`python -m bench rpc --json` runs end to end and prints the documented shape.

Only the shape is checked: timing assertions would make the suite flaky on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.procs import ServerFailed, ServerProcess, server_process, wait_until_healthy
from bench.stats import percentile
from mesh.health import HealthRecord, write_health

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {"calls_per_s", "p50_ms", "p99_ms"}
LEVELS = {"c1", "c64"}


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.timeout(180)
def test_rpc_bench_prints_figures_for_every_side(mesh_broker_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "rpc", "--json", "--calls", "200", "--warmup", "20",
         "--url", mesh_broker_url],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert set(report) == {"mesh", "baseline", "baseline_wire", "mesh_traced", "ratio",
                           "ratio_wire", "ratio_traced"}
    for side in ("mesh", "baseline", "baseline_wire", "mesh_traced"):
        assert set(report[side]) == LEVELS
        for level in LEVELS:
            figures = report[side][level]
            assert set(figures) == FIGURES
            assert all(isinstance(v, int | float) and v > 0 for v in figures.values()), figures
            assert figures["p50_ms"] <= figures["p99_ms"]
    for ratio in ("ratio", "ratio_wire", "ratio_traced"):
        assert set(report[ratio]) == LEVELS
        assert all(isinstance(v, int | float) and v > 0 for v in report[ratio].values())


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (
        50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0


@pytest.fixture
def idle_server() -> Iterator[ServerProcess]:
    """A process that stays up and never beats: a service still starting."""
    with server_process("mesh server", [sys.executable, "-c", "import time; time.sleep(60)"]
                        ) as server:
        yield server


async def test_wait_until_healthy_fails_at_once_with_the_output_of_a_server_that_exits(
        tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('no admin port'); raise SystemExit(3)"]
    with (server_process("mesh server", argv) as server,
          pytest.raises(ServerFailed, match=r"(?s)exited with code 3.*no admin port")):
        await wait_until_healthy(server, tmp_path, "server", timeout=60)


async def test_wait_until_healthy_gives_up_at_its_deadline_saying_why(
        idle_server: ServerProcess, tmp_path: Path) -> None:
    with pytest.raises(ServerFailed, match=r"did not become healthy within 0.5s "
                                           r"\(last error: no heartbeat yet"):
        await wait_until_healthy(idle_server, tmp_path, "server", timeout=0.5)


async def test_wait_until_healthy_returns_once_the_service_has_beaten(
        idle_server: ServerProcess, tmp_path: Path) -> None:
    waiting = asyncio.create_task(wait_until_healthy(idle_server, tmp_path, "server",
                                                     timeout=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    write_health(tmp_path, HealthRecord(service="server", instance="s1",
                                        pid=idle_server.process.pid, state="running",
                                        beat_at=time.time(), interval_s=5))
    await asyncio.wait_for(waiting, 5)


def bench_json(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "bench", *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False,
                          env={**os.environ, "MESH_LOG_LEVEL": "WARNING"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_startup_bench_prints_figures(mesh_postgres_admin_url: str) -> None:
    report = bench_json("startup", "--plugins", "3", "--migrations", "2", "--repeat", "1",
                        "--discovery-plugins", "4", "--pg-admin-url", mesh_postgres_admin_url)
    for kind in ("postgresql", "sqlite"):
        figures = report[kind]
        assert isinstance(figures, dict)
        assert {"first_start_s", "second_start_s", "no_storage_s",
                "second_over_no_storage"} <= figures.keys()
        timings = ("first_start_s", "second_start_s", "no_storage_s", "second_over_no_storage")
        assert all(figures[k] > 0 for k in timings), figures  # a difference may be negative
    found = report["discovery"]
    assert found["generated"] == 4 and found["plugins"] >= 4, found
    assert all(found[k] > 0 for k in ("uncached_discover_s", "cached_discover_s",
                                      "discover_uncached_over_cached",
                                      "process_uncached_over_cached")), found


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_notify_bench_prints_figures_for_both_sides(mesh_broker_url: str) -> None:
    report: dict[str, Any] = bench_json("notify", "--devices", "10", "--rounds", "2", "--url",
                                        mesh_broker_url)
    assert 0 < report["notification_p50_ms"] <= report["notification_p99_ms"]
    assert 0 < report["topic_p50_ms"] <= report["topic_p99_ms"]
    # to followers: the notification and one row for all of them; named: one row per user
    assert (report["rows_to_followers"], report["rows_to_named_users"]) == (2, 11)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_fanout_bench_prints_rows(mesh_broker_url: str) -> None:
    report = bench_json("fanout", "--subscribers", "5", "20", "--notifies", "3",
                        "--url", mesh_broker_url)
    rows = report["rows"]
    assert isinstance(rows, list) and [r["subscribers"] for r in rows] == [5, 20]
    for row in rows:
        assert {"provider_calls_per_notify", "p50_ms", "p99_ms"} <= row.keys()
        assert row["provider_calls_per_notify"] == 1.0  # per client service, never per device
        assert 0 < row["p50_ms"] <= row["p99_ms"]


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_tasks_bench_prints_figures_for_every_side(mesh_broker_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "tasks", "--json", "--noop", "200", "--sleep10", "50",
         "--rounds", "1", "--url", mesh_broker_url],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    sides = ("mesh", "celery", "dramatiq", "taskiq")
    assert set(report) == {*sides, "ratio"}
    for side in sides:
        assert set(report[side]) == {"noop", "sleep10"}
        for figures in report[side].values():
            assert set(figures) == {"enqueue_per_s", "drain_per_s"}
            assert all(isinstance(v, int | float) and v > 0 for v in figures.values()), figures
    assert set(report["ratio"]) == set(sides[1:])
    for ratios in report["ratio"].values():
        assert set(ratios) == {f"{w}_{r}" for w in ("noop", "sleep10")
                               for r in ("drain", "enqueue")}
        assert all(isinstance(v, int | float) and v > 0 for v in ratios.values())


def test_tasks_bench_refuses_an_unknown_peer() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "tasks", "--peers", "celery,rq"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "choose among celery, dramatiq, taskiq, not 'celery,rq'" in done.stderr


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(240)
def test_shell_bench_prints_size_and_times() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "shell", "--json", "--repeat", "1", "--rows", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=200, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"rows", "repeat", "size", "times", "aim_switch_over_bare"}
    size = report["size"]
    from services.client.gateway.web_security import SHELL_FILES

    assert set(size["files"]) == {"index.html", "sw.js", *SHELL_FILES}
    assert size["gzip_bytes"] == sum(f["gzip_bytes"] for f in size["files"].values())
    assert size["within_aim"], size  # not a timing: the size is the same on any machine
    times = report["times"]
    for name in ("shell_cold", "shell_warm", "shell_switch", "bare_cold", "bare_warm"):
        assert times[f"{name}_ms"] > 0, times
    assert times["switch_over_bare_warm"] == round(
        times["shell_switch_ms"] / times["bare_warm_ms"], 2)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_memory_bench_reports_every_process_beside_a_bare_one(mesh_broker_url: str) -> None:
    report = bench_json("memory", "--settle", "0.5", "--restarted", "--url", mesh_broker_url)
    assert report["restarted"] is True
    processes = report["processes"]
    assert isinstance(processes, dict)
    assert set(processes) == {"supervisor", "server", "client", "agent", "worker"}
    floor = report["python_c_pass_mb"]
    assert isinstance(floor, float) and floor > 0
    for name, row in processes.items():
        assert floor <= row["bare_mb"] < row["resident_mb"], (name, row)
        # the supervisor loads no third-party library at all (tests/mesh/test_at_rest.py)
        assert (row["libraries"] == 0) == (name == "supervisor"), (name, row)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_abuse_bench_prints_each_attack_against_its_baseline(mesh_broker_url: str) -> None:
    report = bench_json("abuse", "--attackers", "5", "--selectors", "10", "--body-mb", "30",
                        "--repeat", "1", "--url", mesh_broker_url)
    for attack in ("sign_in_flood", "churn"):
        figures = report[attack]
        assert isinstance(figures, dict)
        assert figures["alone_ms"] > 0 and figures["attacked_ms"] > 0 and figures["ratio"] > 0
    body = report["big_body"]
    assert isinstance(body, dict) and body["status"] == 413 and body["growth_mb"] < 20
