"""The taskiq side of `python -m bench tasks` (taskiq-aio-pika): the same two tasks as
bench/plugins, counted the same way (one byte appended to $MESH_BENCH_COUNTER per completed
task), as async functions, as mesh's are.

Configured for the guarantees mesh gives: a durable quorum queue (taskiq-aio-pika's default),
persistent messages published with publisher confirms (its defaults), acknowledged after the
task has run (the worker runs with `--ack-type when_executed`), no result backend.
"""

from __future__ import annotations

import asyncio
import os

from taskiq_aio_pika import AioPikaBroker
from taskiq_aio_pika.exchange import Exchange
from taskiq_aio_pika.queue import Queue

NAME = os.environ.get("MESH_BENCH_TASKIQ_QUEUE", "mesh-bench-taskiq")
QOS = int(os.environ.get("MESH_BENCH_TASKIQ_QOS", "16"))
broker = AioPikaBroker(
    os.environ.get("MESH_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1/"),
    qos=QOS,
    exchange=Exchange(name=NAME),
    task_queues=[Queue(name=NAME)],
    dead_letter_queue=Queue(name=f"{NAME}.dead"),
    delay_queue=Queue(name=f"{NAME}.delay"),
)

_counter: int | None = None


def _done() -> None:
    global _counter
    if _counter is None:  # opened in each worker process
        _counter = os.open(os.environ["MESH_BENCH_COUNTER"],
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_counter, b".")


@broker.task(task_name="bench.noop")
async def noop() -> None:
    _done()


@broker.task(task_name="bench.sleep10")
async def sleep10() -> None:
    await asyncio.sleep(0.01)
    _done()
