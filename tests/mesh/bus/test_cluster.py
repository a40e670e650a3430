"""A three-node RabbitMQ cluster (scripts/rabbitmq-cluster) loses a node under load.

Every mesh connection starts on rc2, which then holds the RPC queue, the results queue and
the task queues' leaders; rc2 is killed with kill -9 half way through 1,000 keyed tasks while
four loops call noop.echo. The scenario is bench/cluster.py's (`python -m bench cluster`).

With the queues mesh declares on a single node (MESH_BROKER_CLUSTER=false) the RPC queue and
the enqueuer's results queue are durable classic queues homed on rc2: RabbitMQ refuses to
redeclare them ("home node ... is down or inaccessible") until rc2 returns, so the server and
the enqueuer cannot reconnect. That test is xfail (strict) with the reason: it shows what the
cluster design is for, and fails the day classic queues recover by themselves.

On a cluster (several broker URLs, the default here) those queues are quorum queues. That
design is measured by `python -m bench cluster` and not yet a test: on this 2-core machine,
shared with other work, it recovered in about half the runs (nothing lost, first good call
1.5 to 7.5 s after the kill) and in the others the surviving nodes kept refusing publishes
(Basic.Nack) to quorum queues whose members were healthy, cause not yet found
(docs/operations.md, "In a cluster").
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
    """`queues`: "cluster" or "classic" (bench/cluster.py)."""
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
    "the single-node queues: the RPC queue and the task results queue are durable classic "
    "queues, and while their home node is down RabbitMQ 3.10 refuses to redeclare them (404 "
    "home node down), so the server and the enqueuer cannot reconnect to another node until "
    "it returns"))
async def test_single_node_queues_survive_losing_their_node(cluster_urls: list[str],
                                                             tmp_path: Path) -> None:
    check(await kill_under_load(cluster_urls, tmp_path, "classic"), first_good_within=10.0)
