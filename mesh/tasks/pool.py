"""The worker's process pool for CPU-bound tasks: one task per process at a time, as Peek's
Celery forks did, with a process killed (and replaced) when its task outruns its time limit.

concurrent.futures.ProcessPoolExecutor cannot do that: killing one of its processes breaks the
whole pool. Here each process is a slot with a pipe of its own; the event loop waits for a
slot's answer in a thread of a small pool (one thread per process), so it never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from mesh.tasks.context import TaskInfo, _current


class TimeLimitExceeded(Exception):
    """The task ran past its time limit; its process was killed."""


class ProcessDied(Exception):
    """The task's process died while running it (killed, out of memory, a crash in C code)."""


class TaskRaised(Exception):
    """The task raised in its process: the exception's type name and formatted traceback."""

    def __init__(self, type_name: str, formatted: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name
        self.formatted = formatted


def _serve(connection: Connection) -> None:
    """A pool process: run one job at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the worker, which stops us
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        function, argument, info = job
        token = _current.set(info)
        try:
            result = function(argument)
            connection.send(("ok", result))
        except BaseException as exc:  # everything goes back to the worker
            with contextlib.suppress(BaseException):
                connection.send(("error", type(exc).__name__, traceback.format_exc()))
        finally:
            _current.reset(token)


class _Slot:
    def __init__(self, context: Any) -> None:
        self.context = context
        self.process: BaseProcess | None = None
        self.connection: Connection | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def spawn(self) -> None:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(child,), daemon=True,
                                       name="mesh-task-process")
        process.start()
        child.close()  # ours closed: the pipe reports EOF as soon as the process dies
        self.process, self.connection = process, parent

    def call(self, job: tuple[Any, ...]) -> tuple[Any, ...]:
        assert self.connection is not None
        try:
            self.connection.send(job)
            answer: tuple[Any, ...] = self.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            return ("died",)
        return answer

    def signal_kill(self) -> None:
        """SIGKILL the process without waiting: the thread reading its pipe then gets EOF."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def kill(self) -> None:
        process, connection = self.process, self.connection
        self.process = self.connection = None
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)
        if connection is not None:
            connection.close()


class ProcessPool:
    """`size` processes; `run` waits for a free one, so at most `size` tasks run at once."""

    def __init__(self, size: int, *, start_method: str | None = None) -> None:
        if size < 1:
            raise ValueError("a process pool has at least one process")
        self.size = size
        method = start_method or ("forkserver" if sys.platform == "linux" else "spawn")
        self._context = multiprocessing.get_context(method)
        self._slots = [_Slot(self._context) for _ in range(size)]
        self._idle: asyncio.Queue[_Slot] | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    def _ready(self) -> asyncio.Queue[_Slot]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for slot in self._slots:
                self._idle.put_nowait(slot)
            self._threads = ThreadPoolExecutor(self.size, thread_name_prefix="mesh-task-pool")
        return self._idle

    async def warm_up(self) -> None:
        """Start the processes now, rather than on the first task."""
        loop = asyncio.get_running_loop()
        self._ready()
        await asyncio.gather(*(loop.run_in_executor(self._threads, s.spawn)
                               for s in self._slots if not s.alive))

    async def run(
        self, function: Callable[[Any], Any], argument: Any, info: TaskInfo, time_limit: float
    ) -> Any:
        if self._closed:
            raise RuntimeError("the process pool is closed")
        idle = self._ready()
        slot = await idle.get()
        loop = asyncio.get_running_loop()
        try:
            if not slot.alive:
                slot.kill()
                await loop.run_in_executor(self._threads, slot.spawn)
            answer = loop.run_in_executor(self._threads, slot.call, (function, argument, info))
            try:
                async with asyncio.timeout(time_limit):
                    reply = await asyncio.shield(answer)
            except TimeoutError:
                slot.signal_kill()
                await answer
                await loop.run_in_executor(self._threads, slot.kill)
                raise TimeLimitExceeded(f"ran past its time limit of {time_limit:g}s") from None
            except asyncio.CancelledError:
                slot.signal_kill()
                await asyncio.shield(answer)
                await loop.run_in_executor(self._threads, slot.kill)
                raise
        finally:
            idle.put_nowait(slot)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "error":
            raise TaskRaised(reply[1], reply[2])
        slot.kill()
        raise ProcessDied("its process died while running it")

    async def close(self) -> None:
        """Stop every process (a running task is killed: drain before closing)."""
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._threads is not None:
            for slot in self._slots:
                slot.signal_kill()
            await asyncio.gather(*(loop.run_in_executor(None, s.kill) for s in self._slots))
            self._threads.shutdown(wait=False)
