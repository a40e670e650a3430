"""A three-node RabbitMQ cluster (scripts/rabbitmq-cluster) loses a node under load.

Every mesh connection starts on rc2, which then holds the RPC queue, the results queue and
the task queues' leaders; rc2 is killed with kill -9 half way through 1,000 keyed tasks while
four loops call noop.echo. The scenario is bench/cluster.py's (`python -m bench cluster`).

With today's queues the RPC queue and the enqueuer's results queue are durable classic queues
homed on rc2: RabbitMQ refuses to redeclare them ("home node ... is down or inaccessible")
until rc2 returns, so the server and the enqueuer cannot reconnect. That test is xfail (strict)
with the reason, so that the day the queues recover it fails and says so. The same scenario with
those two made quorum queues is `python -m bench cluster --queues quorum`, not a test: it swaps
the queue definitions for the run (a design measured before it is made), its first good call
came 2.1 to 7.3 s after the kill here, and one run in six lost results, cause not yet found.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cluster import CALL_TIMEOUT, HUNG_SLACK, Figures, cluster, scenario

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

NODE = 2


@pytest.fixture(scope="session")
def cluster_urls() -> Iterator[list[str]]:
    """The cluster's URLs; started if it is not running (it needs root), and left running."""
    if os.geteuid() != 0:
        pytest.fail("the cluster test starts RabbitMQ nodes as the rabbitmq user: run as root",
                    pytrace=False)
    yield cluster("start").split(",")


async def kill_under_load(urls: list[str], work: Path, queues: str) -> Figures:
    try:
        return await scenario(urls, node=NODE, tasks=1000, callers=4, work=work,
                              recover_s=20.0, queues=queues)
    finally:  # the next test finds three nodes again
        await asyncio.to_thread(cluster, "start-node", str(NODE))


def check(figures: Figures, first_good_within: float) -> None:
    assert figures.tasks_lost == 0, figures
    assert figures.keys_applied_twice == 0, figures
    assert figures.calls_hung == 0, figures
    assert figures.slowest_call_around_kill_s <= CALL_TIMEOUT + HUNG_SLACK, figures
    assert figures.first_good_call_after_kill_s is not None, figures
    assert figures.first_good_call_after_kill_s < first_good_within, figures
    assert figures.calls_per_s_after > 0, figures


@pytest.mark.xfail(strict=True, reason=(
    "today's RPC queue and task results queue are durable classic queues: while their home "
    "node is down RabbitMQ 3.10 refuses to redeclare them (404 home node down), so the server "
    "and the enqueuer cannot reconnect to another node until it returns"))
async def test_todays_queues_survive_losing_their_node(cluster_urls: list[str],
                                                       tmp_path: Path) -> None:
    check(await kill_under_load(cluster_urls, tmp_path, "today"), first_good_within=10.0)
