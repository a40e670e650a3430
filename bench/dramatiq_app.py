"""The dramatiq side of `python -m bench tasks`: the same two tasks as bench/plugins, counted the
same way (one byte appended to $MESH_BENCH_COUNTER per completed task).

Configured for the guarantees mesh gives: messages persistent (dramatiq's default) and published
with publisher confirms (`confirm_delivery`, off by default), acknowledged after the task has
run (dramatiq's default), no result backend. Its queue is a classic durable queue (dramatiq
declares no other kind); mesh's task queues are quorum queues, which replicate in a cluster.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = os.environ.get("MESH_BENCH_DRAMATIQ_QUEUE", "mesh-bench-dramatiq")
broker = RabbitmqBroker(url=os.environ.get("MESH_BENCH_BROKER_URL",
                                           "amqp://guest:guest@127.0.0.1/"),
                        confirm_delivery=True)
dramatiq.set_broker(broker)

_counter: int | None = None


def _done() -> None:
    global _counter
    if _counter is None:  # opened in each worker process
        _counter = os.open(os.environ["MESH_BENCH_COUNTER"],
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_counter, b".")


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    _done()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def sleep10() -> None:
    time.sleep(0.01)
    _done()
