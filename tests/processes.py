"""Run mesh services as real processes in tests, and drop their broker connections."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class MeshProcess:
    """`mesh <args>` in a child process, its JSON log lines in a file the test can read.

    `argv` runs that command line instead, and `base_env` replaces this process's environment
    as the one the child's starts from (both for tests/deploy/test_compose.py, which runs what the
    compose file says)."""

    def __init__(self, args: list[str], log_dir: Path, name: str, env: dict[str, str], *,
                 argv: list[str] | None = None, base_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        full_env = {**(os.environ if base_env is None else base_env),
                    "MESH_LOG_FORMAT": "json", "MESH_LOG_LEVEL": "INFO",
                    "MESH_DATA_DIR": str(log_dir / "data"), "MESH_CLIENT_PORT": "0",
                    "MESH_ADMIN_PORT": "0", **env}
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "mesh", *args], env=full_env,
            stdout=self._log, stderr=subprocess.STDOUT, text=True,
        )

    def text(self) -> str:
        return self.log_path.read_text()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    found.append(json.loads(line))
        return found

    def wait_for(self, predicate: Any, timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     f"{self.text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {what} within {timeout}s:\n{self.text()[-3000:]}")

    def wait_for_event(self, event: str, timeout: float = 20.0) -> None:
        self.wait_for(lambda p: any(e.get("event") == event for e in p.events()), timeout, event)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a child process to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def drop_connections(name_part: str) -> int:
    """Make the broker close every connection whose connection_name contains `name_part`."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q",
         "--no-table-headers"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    pids = [line.split("\t", 1)[0] for line in listing.splitlines()
            if '{"connection_name","' in line and name_part in line]
    for pid in pids:
        subprocess.run(["rabbitmqctl", "close_connection", pid, "test: broker drops it"],
                       capture_output=True, check=True, timeout=30)
    return len(pids)


FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def fixture_plugins_env(site: Path, *names: str, plugins_dir: Path = FIXTURE_PLUGINS
                        ) -> dict[str, str]:
    """Environment for a child process that discovers the named fixture plugins as if they
    were pip-installed: a minimal .dist-info per plugin carries its entry point."""
    for name in names:
        dist = site / f"mesh_fixture_{name}-1.0.0.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: mesh-fixture-{name}\nVersion: 1.0.0\n")
        (dist / "entry_points.txt").write_text(
            f"[mesh.plugins]\n{name} = mesh_fixture_{name}\n")
    path = os.pathsep.join([str(site), str(plugins_dir), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep)}
