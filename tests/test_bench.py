"""`python -m bench rpc --json` runs end to end and prints the documented shape.

Only the shape is checked: timing assertions would make the suite flaky on a busy machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"calls_per_s", "p50_ms", "p99_ms"}
LEVELS = {"c1", "c64"}


@pytest.mark.rabbitmq
@pytest.mark.timeout(180)
def test_rpc_bench_prints_figures_for_both_sides(broker_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "rpc", "--json", "--calls", "200", "--warmup", "20",
         "--url", broker_url],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert set(report) == {"mesh", "baseline", "ratio"}
    for side in ("mesh", "baseline"):
        assert set(report[side]) == LEVELS
        for level in LEVELS:
            figures = report[side][level]
            assert set(figures) == FIGURES
            assert all(isinstance(v, int | float) and v > 0 for v in figures.values()), figures
            assert figures["p50_ms"] <= figures["p99_ms"]
    assert set(report["ratio"]) == LEVELS
    assert all(isinstance(v, int | float) and v > 0 for v in report["ratio"].values())


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (
        50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_tasks_bench_prints_figures_for_both_sides(broker_url: str) -> None:
    # Celery is a benchmark-only extra (`make bench` installs it): the one test that may skip.
    pytest.importorskip("celery", reason="Celery is the benchmark-only extra: make bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "tasks", "--json", "--noop", "200", "--sleep10", "50",
         "--rounds", "1", "--url", broker_url],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"mesh", "celery", "ratio"}
    for side in ("mesh", "celery"):
        assert set(report[side]) == {"noop", "sleep10"}
        for figures in report[side].values():
            assert set(figures) == {"enqueue_per_s", "drain_per_s"}
            assert all(isinstance(v, int | float) and v > 0 for v in figures.values()), figures
    assert set(report["ratio"]) == {"noop", "sleep10"}
    assert all(isinstance(v, int | float) and v > 0 for v in report["ratio"].values())
