"""The Celery side of `python -m bench tasks`: the same two tasks as bench/plugins, counted the
same way (one byte appended to $MESH_BENCH_COUNTER per completed task).

Configured for the guarantees mesh gives, so that the two are compared doing the same job:
acknowledged after the task has run (acks_late, and requeued if its process dies), published
persistently with publisher confirms, no result backend (completions are counted in the file).
Everything else is Celery's default, its prefetch (4 x concurrency) included.
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("mesh_bench", broker=os.environ.get("MESH_BENCH_BROKER_URL",
                                                 "amqp://guest:guest@127.0.0.1/"))
QUEUE = os.environ.get("MESH_BENCH_CELERY_QUEUE", "mesh-bench-celery")
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    broker_transport_options={"confirm_publish": True},
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_counter: int | None = None


def _done() -> None:
    global _counter
    if _counter is None:  # opened in each pool process, after the fork
        _counter = os.open(os.environ["MESH_BENCH_COUNTER"],
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_counter, b".")


@app.task(name="bench.noop")
def noop() -> None:
    _done()


@app.task(name="bench.sleep10")
def sleep10() -> None:
    time.sleep(0.01)
    _done()
