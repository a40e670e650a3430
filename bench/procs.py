"""Server processes for benchmarks: started in the background, always stopped again.

The servers run in processes of their own so that the caller and the server do not share an
event loop (or a core) and the figures are those of a real deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from bench.stats import Call
from mesh.health import check_health


class ServerFailed(RuntimeError):
    """A server process exited, or never started serving."""


class ServerProcess:
    """A child process whose output goes to a temporary file, shown only if it fails."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], output: IO[bytes]
    ) -> None:
        self.name = name
        self._output = output
        # A session of its own: Ctrl-C reaches only us, and we stop the server in order.
        self.process = subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=self._output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def output(self, limit: int = 4000) -> str:
        self._output.seek(0)
        return self._output.read().decode(errors="replace")[-limit:]

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ServerFailed(f"{self.name} exited with code {code}:\n{self.output()}")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it takes longer than `grace`."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def server_process(
    name: str, argv: list[str], env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    with tempfile.TemporaryFile() as output:
        server = ServerProcess(name, argv, os.environ if env is None else env, output)
        try:
            yield server
        finally:
            server.stop()


async def wait_until_serving(
    server: ServerProcess, call: Call, *, timeout: float = 60.0, attempt_timeout: float = 2.0
) -> None:
    """Retry `call` until it succeeds: the server is up once it answers, not when it starts."""
    await _retry(server, call, timeout=timeout, attempt_timeout=attempt_timeout,
                 what="did not answer")


async def wait_until_healthy(
    server: ServerProcess, data_dir: Path, service: str, *, timeout: float = 60.0
) -> None:
    """Wait until a `mesh run <service>` process has finished starting: its health check passes
    (a heartbeat, sent only once every plugin and the service's own HTTP server are up).

    An answer from one plugin is not enough: the server serves a plugin's RPCs while it is still
    starting the others and its admin API, and can still fail and exit after that answer.
    """

    async def healthy() -> None:
        await asyncio.to_thread(check_health, data_dir, service)

    await _retry(server, healthy, timeout=timeout, attempt_timeout=10.0,
                 what="did not become healthy")


async def _retry(server: ServerProcess, attempt: Call, *, timeout: float,
                 attempt_timeout: float, what: str) -> None:
    """Run `attempt` until it returns, failing at once if the process exits and with the last
    error and the process's output once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        try:
            async with asyncio.timeout(attempt_timeout):
                await attempt()
            return
        except TimeoutError:
            last = f"no answer within {attempt_timeout:g}s"
        except Exception as exc:  # not yet declared, not yet consuming, not yet connected
            last = str(exc) or repr(exc)
        if time.monotonic() > deadline:
            raise ServerFailed(f"{server.name} {what} within {timeout:g}s (last error: {last}):"
                               f"\n{server.output()}")
        await asyncio.sleep(0.1)


def install_sigterm_handler() -> None:
    """Make SIGTERM act as Ctrl-C, so `finally` blocks stop the servers and delete the queues.

    Re-raising SIGINT (rather than raising KeyboardInterrupt here) lets asyncio.run's own SIGINT
    handling cancel the main task cleanly when the signal arrives inside the event loop.
    """

    def as_interrupt(signum: int, frame: object) -> None:
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, as_interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
