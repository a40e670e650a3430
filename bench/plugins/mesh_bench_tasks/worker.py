"""Each task appends one byte to $MESH_BENCH_COUNTER when it is done: the benchmark counts
completions by the file's size, the same way for mesh and for Celery (bench/celery_app.py).

`keyed` is what a task that must not apply twice does: it checks its idempotency key, and
writes `<key> applied` or `<key> skipped` to $MESH_BENCH_KEYS (bench/cluster.py counts them)."""

import asyncio
import os

from mesh import Empty, PluginPart, current_task, handles
from mesh_bench_tasks.contract import BenchTasksContract


class BenchTasksWorker(PluginPart):
    async def load(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self.counter = os.open(os.environ["MESH_BENCH_COUNTER"], flags)
        keys = os.environ.get("MESH_BENCH_KEYS")
        self.keys = os.open(keys, flags) if keys else None
        self.applied: set[str] = set()

    async def unload(self) -> None:
        os.close(self.counter)
        if self.keys is not None:
            os.close(self.keys)

    @handles(BenchTasksContract.noop)
    async def noop(self, request: Empty) -> Empty:
        os.write(self.counter, b".")
        return request

    @handles(BenchTasksContract.sleep10)
    async def sleep10(self, request: Empty) -> Empty:
        await asyncio.sleep(0.01)
        os.write(self.counter, b".")
        return request

    @handles(BenchTasksContract.keyed)
    async def keyed(self, request: Empty) -> Empty:
        info = current_task()
        assert info is not None and self.keys is not None
        first = info.idempotency_key not in self.applied
        self.applied.add(info.idempotency_key)
        os.write(self.keys, f"{info.idempotency_key} {'applied' if first else 'skipped'}\n"
                 .encode())
        return request
