"""Is the service running here healthy? The answer a container health check needs.

Each service keeps a health file, `<data dir>/health/<service>@<host>.json`, rewritten every time
one of its heartbeats reaches the broker: a fresh file means its event loop runs and the bus takes
its messages. The host name keeps apart the replicas that share a data directory (servers on one
volume): a container's host name is its own. The server and the client add the URL of their own
HTTP check (`/readyz`, `/healthz`), which `mesh health` asks as well. So a check needs no curl in
the image and opens no broker connection of its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from mesh.names import MISSED_BEATS  # not mesh.directory: `mesh health` must start fast

HEALTH_FOLDER = "health"


class Unhealthy(Exception):
    """Why the service is not healthy, in words for the health check's output."""


class HealthRecord(BaseModel):
    service: str
    instance: str
    pid: int
    state: Literal["running", "stopping"]
    beat_at: float  # time.time() when the broker took the last heartbeat
    interval_s: float
    check_url: str | None = None


def health_file(data_dir: Path, service: str) -> Path:
    return data_dir / HEALTH_FOLDER / f"{service}@{socket.gethostname()}.json"


def write_health(data_dir: Path, record: HealthRecord) -> None:
    """Replace the file in one step, so a check never reads half of it."""
    path = health_file(data_dir, record.service)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_text(record.model_dump_json())
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def local_url(host: str, port: int, path: str, *, scheme: str = "http") -> str:
    """The URL a check on this machine uses for a server bound to `host`."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


def remove_health(data_dir: Path, service: str) -> None:
    """A service that stopped cleanly leaves no health file behind."""
    with contextlib.suppress(OSError):
        health_file(data_dir, service).unlink()


def check_health(data_dir: Path, service: str, *, now: float | None = None,
                 timeout: float = 3.0) -> HealthRecord:
    """The service's last health record if it is healthy; raises Unhealthy saying why not."""
    path = health_file(data_dir, service)
    try:
        record = HealthRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise Unhealthy(f"no heartbeat yet: {path} does not exist (the {service} has not "
                        "started, or has not reached the broker)") from None
    except (OSError, ValidationError) as exc:
        raise Unhealthy(f"{path} is unreadable: {exc}") from None
    if record.service != service:
        raise Unhealthy(f"{path} is the {record.service}'s, not the {service}'s")
    if record.state != "running":
        raise Unhealthy(f"{record.instance} is {record.state}")
    age = (time.time() if now is None else now) - record.beat_at
    if age > record.interval_s * MISSED_BEATS:
        raise Unhealthy(f"{record.instance}: last heartbeat {age:.1f}s ago, more than "
                        f"{MISSED_BEATS} intervals of {record.interval_s:g}s")
    if record.check_url is not None:
        _ask(record.check_url, timeout)
    return record


def _ask(url: str, timeout: float) -> None:
    # The check asks this machine's own process whether it is ready, by a loopback address
    # its certificate does not name: it proves the server answers, not who it is, and sends
    # nothing secret, so it does not verify the certificate.
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unhealthy(f"{url} does not answer: {reason}") from None
    if status != 200:
        raise Unhealthy(f"{url} answered {status}")
