"""The task ledger's wire side: what a worker reports about its tasks, and what a reader gets.

Each worker reports every state change of the tasks it runs (started, retrying, succeeded,
dead) to the servers, which keep one row per task id for MESH_TASK_LEDGER_RETENTION seconds
(mesh/platform/ledger.py). So a task's state and result can be read by its id from any process,
long after the handle that enqueued it is gone (docs/tasks.md, "Handles from an id").

The reports stay off the task's hot path: the worker buffers them, keeps only the latest per
task (a task that starts and finishes within one flush is one report), and publishes them as
one unconfirmed message per flush, every FLUSH_SECONDS or FLUSH_REPORTS reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field

from mesh.bus.message import Message
from mesh.bus.transport import Transport, TransportClosed
from mesh.names import task_state_key
from mesh.rpc.wire import CONTENT_TYPE, HEADER_CALLER

log = structlog.get_logger("mesh.tasks.ledger")

STARTED, RETRYING, SUCCEEDED, DEAD = "started", "retrying", "succeeded", "dead"
STATES = (STARTED, RETRYING, SUCCEEDED, DEAD)
FINAL = (SUCCEEDED, DEAD)
UNKNOWN = "unknown"  # not started yet, or no longer kept (or never queued)
QUEUED = "queued"  # known only to the process that enqueued it
REPORTER_KIND = "worker"  # the only kind whose reports a server keeps
# The order of states within one attempt: a later report of the same attempt never goes back.
PHASE = {STARTED: 1, RETRYING: 2, SUCCEEDED: 3, DEAD: 3}

TASK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
TASK_ID_RULE = "1 to 128 letters, digits, '_', '.', ':' or '-'"
FLUSH_SECONDS = 0.1
FLUSH_REPORTS = 256
FLUSH_BYTES = 1 << 20


def check_task_id(task_id: str) -> str:
    """The id, if it can be a task id; ValueError with the rule if not."""
    if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
        shown = task_id[:40] + "…" if isinstance(task_id, str) and len(task_id) > 40 else task_id
        raise ValueError(f"{shown!r} is not a task id: a task id has {TASK_ID_RULE}")
    return task_id


class TaskRecord(BaseModel):
    """What the ledger knows of one task: the reply of `mesh.task_state`, the admin API's
    `GET /api/v1/tasks/{task_id}`, and `mesh tasks show --json`."""

    task_id: str
    state: Literal["unknown", "queued", "started", "retrying", "succeeded", "dead"] = Field(
        description="`unknown`: not started yet, or not kept (past the retention, or never "
        "queued); `queued`: only the enqueuing process knows it; `retrying`: an attempt "
        "failed and the next one waits for its backoff; `succeeded` and `dead` are final.")
    task: str | None = Field(default=None, description="plugin.task")
    attempts: int = Field(default=0, description="The attempt that ran last (1 is the first).")
    max_attempts: int | None = None
    enqueued_by: str | None = Field(default=None, description="The kind that enqueued it.")
    worker: str | None = Field(default=None, description="The worker instance that ran the "
                               "last attempt.")
    enqueued_at: datetime | None = None
    started_at: datetime | None = Field(default=None, description="When its last attempt "
                                        "started.")
    updated_at: datetime | None = None
    result: str | None = Field(default=None, description="A succeeded task's result, as JSON "
                               "text, when it was small enough to keep.")
    result_bytes: int | None = Field(default=None, description="The size of the result.")
    result_kept: bool = Field(default=False, description="False for a result above "
                              "MESH_TASK_LEDGER_MAX_RESULT: too large to keep.")
    error: dict[str, Any] | None = Field(default=None, description="The last error (code, "
                                         "message, attempts, ...) of a retrying or dead task.")

    @property
    def final(self) -> bool:
        return self.state in FINAL


class TaskStateRequest(BaseModel):
    task_id: str = Field(pattern=f"^{TASK_ID.pattern}$",
                         description=f"The task id: {TASK_ID_RULE}.")


def _ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


@dataclass(slots=True)
class StateReport:
    """One state change of one task, as a worker reports it."""

    task_id: str
    task: str
    state: str
    attempt: int
    max_attempts: int
    at_ms: int
    started_at_ms: int | None = None  # when this attempt started
    enqueued_by: str | None = None
    enqueued_at_ms: int | None = None
    result: str | None = None  # JSON text, succeeded only
    result_bytes: int | None = None
    error: dict[str, Any] | None = None  # TaskError.to_wire(), retrying and dead only
    worker: str | None = None  # the reporting instance, from the batch's routing key

    def as_wire(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__  # type: ignore[attr-defined]
                if k != "worker"}

    @property
    def rank(self) -> tuple[int, int]:
        return (self.attempt, PHASE[self.state])


def encode_batch(reports: list[dict[str, Any]], instance: str) -> Message:
    """One batch message of reports in their wire form (StateReport.as_wire())."""
    body = json.dumps({"reports": reports}, separators=(",", ":"))
    return Message(body.encode(), task_state_key(instance), content_type=CONTENT_TYPE,
                   headers={HEADER_CALLER: REPORTER_KIND})


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def decode_report(raw: Any, *, max_result: int, worker: str | None = None) -> StateReport:
    """One report of a batch, checked; ValueError says what is wrong. A result above
    `max_result` bytes is dropped here ("too large to keep"), whatever the worker did."""
    if not isinstance(raw, dict):
        raise ValueError("a report is a JSON object")
    task_id = check_task_id(raw.get("task_id"))  # type: ignore[arg-type]
    task, state = raw.get("task"), raw.get("state")
    if not isinstance(task, str) or not 0 < len(task) <= 129:
        raise ValueError(f"report for {task_id}: no task name")
    if state not in STATES:
        raise ValueError(f"report for {task_id}: unknown state {state!r}")
    attempt, max_attempts, at_ms = (_opt_int(raw.get(k)) for k in
                                    ("attempt", "max_attempts", "at_ms"))
    if attempt is None or attempt < 1 or max_attempts is None or at_ms is None:
        raise ValueError(f"report for {task_id}: attempt, max_attempts and at_ms are integers")
    result = raw.get("result")
    size = _opt_int(raw.get("result_bytes"))
    if result is not None:
        if not isinstance(result, str):
            raise ValueError(f"report for {task_id}: the result is JSON text")
        size = len(result.encode())
        if size > max_result:
            result = None
    error = raw.get("error")
    if error is not None and (not isinstance(error, dict) or len(json.dumps(error)) > max_result):
        error = {"code": "failed", "message": "the error report was too large to keep"}
    enqueued_by = raw.get("enqueued_by")
    return StateReport(
        task_id=task_id, task=task, state=state, attempt=attempt, max_attempts=max_attempts,
        at_ms=at_ms, started_at_ms=_opt_int(raw.get("started_at_ms")),
        enqueued_by=enqueued_by[:64] if isinstance(enqueued_by, str) else None,
        enqueued_at_ms=_opt_int(raw.get("enqueued_at_ms")), result=result,
        result_bytes=size if state == SUCCEEDED else None, error=error, worker=worker)


def decode_batch(message: Message, *, max_result: int) -> tuple[list[StateReport], list[str]]:
    """The reports of one batch message and, for each refused one, why. A batch from another
    kind than the worker is refused whole."""
    caller = message.header(HEADER_CALLER)
    if caller != REPORTER_KIND:
        return [], [f"task state reports come from workers only, not from {caller!r}"]
    try:
        raw = json.loads(message.body)
        items = raw["reports"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return [], ["the batch is not {\"reports\": [...]} JSON"]
    key = message.routing_key.split(".", 1)
    worker = key[1][:200] if len(key) == 2 else None
    reports, refused = [], []
    for item in items:
        try:
            reports.append(decode_report(item, max_result=max_result, worker=worker))
        except ValueError as exc:
            refused.append(str(exc))
    return reports, refused


def merge(old: StateReport | None, new: StateReport) -> bool:
    """Whether `new` replaces `old` as what the ledger says of the task: a later attempt, or a
    later step of the same attempt; a final state stays, unless the task starts over (it was
    queued again from the dead-letter queue) after it died."""
    if old is None:
        return True
    if old.state == DEAD and new.attempt == 1 and new.at_ms > old.at_ms:
        return True
    if old.state == SUCCEEDED:
        return False  # a second run's outcome: the first one is kept, as the handle does
    return new.rank > old.rank


class TaskReporter:
    """A worker's buffer of state reports, flushed as one fire-and-forget message."""

    def __init__(self, transport: Transport, instance: str, *, max_result: int) -> None:
        self.transport = transport
        self.instance = instance
        self.max_result = max_result
        self._pending: dict[str, dict[str, Any]] = {}
        # Attempts started since the last flush, reported only if still running at the flush:
        # a task that starts and ends within one flush costs one report, not two.
        self._starting: dict[str, Callable[[], dict[str, Any]]] = {}
        self._bytes = 0
        self._flusher: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def starting(self, task_id: str, report: Callable[[], dict[str, Any]]) -> None:
        """An attempt of `task_id` starts: `report()` makes its report, at the next flush,
        if no later report of the task came first."""
        self._starting[task_id] = report
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def report(self, report: dict[str, Any]) -> None:
        """Buffer `report` (a StateReport's wire form, replacing an earlier one of the same
        task); never waits. A dict, not a StateReport: this runs for every task."""
        self._starting.pop(report["task_id"], None)
        result = report.get("result")
        if result is not None:
            size = len(result)  # JSON from pydantic: ASCII unless the data is not
            report["result_bytes"] = size
            if size > self.max_result:
                report["result"] = None
            else:
                self._bytes += size
        self._pending[report["task_id"]] = report
        if len(self._pending) >= FLUSH_REPORTS or self._bytes >= FLUSH_BYTES:
            self.flush()
        elif self._flusher is None:
            self._flusher = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._starting:
            for task_id, report in self._starting.items():
                self._pending.setdefault(task_id, report())
            self._starting = {}
        if not self._pending:
            return
        batch, self._pending, self._bytes = list(self._pending.values()), {}, 0
        sending = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self.transport.publish(encode_batch(batch, self.instance))
        except TransportClosed as exc:
            log.warning("task_ledger.report_lost", reports=len(batch), error=str(exc))
        except Exception:
            log.exception("task_ledger.report_failed", reports=len(batch))

    async def close(self) -> None:
        """Send what is buffered, and wait for what is being sent."""
        self.flush()
        if self._sending:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._sending), timeout=5)


def record_of(report: StateReport) -> TaskRecord:
    """The record a reader gets for the latest report of a task."""
    return TaskRecord(
        task_id=report.task_id, state=report.state, task=report.task,  # type: ignore[arg-type]
        attempts=report.attempt, max_attempts=report.max_attempts,
        enqueued_by=report.enqueued_by, worker=report.worker,
        enqueued_at=_ms(report.enqueued_at_ms), started_at=_ms(report.started_at_ms),
        updated_at=_ms(report.at_ms), result=report.result, result_bytes=report.result_bytes,
        result_kept=report.result is not None, error=report.error)
