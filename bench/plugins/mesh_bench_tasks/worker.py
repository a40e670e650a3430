"""Each task appends one byte to $MESH_BENCH_COUNTER when it is done: the benchmark counts
completions by the file's size, the same way for mesh and for Celery (bench/celery_app.py)."""

import asyncio
import os

from mesh import Empty, PluginPart, handles
from mesh_bench_tasks.contract import BenchTasksContract


class BenchTasksWorker(PluginPart):
    async def load(self) -> None:
        self.counter = os.open(os.environ["MESH_BENCH_COUNTER"],
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    async def unload(self) -> None:
        os.close(self.counter)

    @handles(BenchTasksContract.noop)
    async def noop(self, request: Empty) -> Empty:
        os.write(self.counter, b".")
        return request

    @handles(BenchTasksContract.sleep10)
    async def sleep10(self, request: Empty) -> Empty:
        await asyncio.sleep(0.01)
        os.write(self.counter, b".")
        return request
