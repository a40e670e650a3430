"""Timing calls: a closed-loop driver with N calls in flight, and the figures we report."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Run:
    """One timed batch: how long it took and the latency of every call in it (seconds)."""

    calls: int
    elapsed: float
    latencies: list[float]

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    calls_per_s: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in asdict(self).items()}


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples: always one of the measured values."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(runs: Sequence[Run]) -> Summary:
    """Throughput is the median over runs (robust to one noisy round); latency percentiles come
    from all samples pooled, since a p99 from a few hundred calls per round is mostly noise."""
    ordered = sorted(latency for run in runs for latency in run.latencies)
    return Summary(
        calls_per_s=statistics.median(run.calls_per_s for run in runs),
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
    )


async def drive(call: Call, calls: int, concurrency: int) -> Run:
    """Make `calls` calls, keeping `concurrency` in flight (closed loop: a worker sends its next
    call when the last one returns), timing each call with perf_counter."""
    latencies: list[float] = []
    remaining = calls
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = clock()
            await call()
            latencies.append(clock() - started)

    started = clock()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, calls)):
            group.create_task(worker())
    return Run(calls, clock() - started, latencies)
