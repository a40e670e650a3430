"""The task ledger, kept by the servers: one row per task id with what its workers last
reported (state, attempts, times, result or error), kept MESH_TASK_LEDGER_RETENTION seconds.

Every server consumes the one shared queue of reports (`<exchange>.task-state`), so each batch
is stored once, by whichever server took it. Reports are merged in memory and written in
batches (one SELECT and the changed rows per flush, every FLUSH_SECONDS or FLUSH_ROWS), and a
batch message is acknowledged only once written: a server that dies leaves it to another.
The wire side (what a report is, which may replace which) is mesh/tasks/ledger.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mesh.bus.message import Delivery, QueueSpec
from mesh.bus.transport import Consumer, Transport, TransportClosed
from mesh.names import TASK_STATE_PATTERN, task_state_queue
from mesh.platform.models import SCHEMA, TaskLedgerRow
from mesh.platform.purging import purge_forever
from mesh.storage.database import Database
from mesh.tasks import wire
from mesh.tasks.ledger import (
    UNKNOWN,
    StateReport,
    TaskRecord,
    check_task_id,
    decode_batch,
    merge,
    record_of,
)

log = structlog.get_logger("mesh.platform.ledger")

FLUSH_SECONDS = 0.2
FLUSH_ROWS = 500
PREFETCH = 64  # batch messages a server holds unwritten
QUEUE_MAX_LENGTH = 100_000  # batches kept while no server consumes; the oldest go first
PURGE_EVERY = 60.0


def ledger_queue_spec(exchange: str) -> QueueSpec:
    # Quorum, as the task queues: shared by every server, it must not stop them reconnecting
    # when the node it lives on is lost.
    return QueueSpec(task_state_queue(exchange), (TASK_STATE_PATTERN,), durable=True,
                     auto_delete=False, arguments=(("x-queue-type", "quorum"),
                                                   ("x-max-length", QUEUE_MAX_LENGTH),
                                                   ("x-overflow", "drop-head")))


TABLE = cast(Table, TaskLedgerRow.__table__)


def _report(row: Any) -> StateReport:
    return StateReport(
        task_id=row.task_id, task=row.task, state=row.state, attempt=row.attempts,
        max_attempts=row.max_attempts, at_ms=row.updated_ms, started_at_ms=row.started_ms,
        enqueued_by=row.enqueued_by, enqueued_at_ms=row.enqueued_ms, result=row.result,
        result_bytes=row.result_bytes, error=row.error, worker=row.worker)


def _values(report: StateReport, old: StateReport | None = None) -> dict[str, Any]:
    """A row's columns for `report` (a report without its attempt's start keeps the old)."""
    started = report.started_at_ms or (old.started_at_ms if old is not None else None)
    return {"task_id": report.task_id, "task": report.task, "state": report.state,
            "attempts": report.attempt, "max_attempts": report.max_attempts,
            "enqueued_by": report.enqueued_by, "worker": report.worker,
            "enqueued_ms": report.enqueued_at_ms, "started_ms": started,
            "updated_ms": report.at_ms, "result": report.result,
            "result_bytes": report.result_bytes, "error": report.error}


class TaskLedger:
    """One server's side of the ledger: consume reports, write them, purge, answer reads."""

    def __init__(self, transport: Transport, database: Database, *, retention: float,
                 max_result: int) -> None:
        self.transport = transport
        self.database = database
        self.retention = retention
        self.max_result = max_result
        self._pending: dict[str, StateReport] = {}
        self._writing: dict[str, StateReport] = {}  # the flush being written
        self._deliveries: list[Delivery] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._flushing: set[asyncio.Task[None]] = set()
        self._consumer: Consumer | None = None
        self._purger: asyncio.Task[None] | None = None
        self.refused = 0  # reports refused since start (forged, malformed)

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.transport.declare_queue(ledger_queue_spec(self.transport.exchange))
        self._consumer = await self.transport.consume(
            task_state_queue(self.transport.exchange), self._on_batch, prefetch=PREFETCH)
        self._purger = asyncio.get_running_loop().create_task(purge_forever(
            self.purge, min(PURGE_EVERY, self.retention), log, "task_ledger"))

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(TransportClosed):
                await consumer.cancel()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        await self.flush()

    # -- writing ---------------------------------------------------------------------------

    async def _on_batch(self, delivery: Delivery) -> None:
        reports, refused = decode_batch(delivery.message, max_result=self.max_result)
        if refused:
            self.refused += len(refused)
            log.warning("task_ledger.refused", key=delivery.message.routing_key,
                        refused=len(refused), first=refused[0])
        for report in reports:
            if merge(self._pending.get(report.task_id), report):
                self._pending[report.task_id] = report
        self._deliveries.append(delivery)
        if len(self._pending) >= FLUSH_ROWS or len(self._deliveries) >= PREFETCH:
            self._flush_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        """Write what is pending, then acknowledge the batches it came in."""
        async with self._lock:
            reports, self._pending = self._pending, {}
            deliveries, self._deliveries = self._deliveries, []
            self._writing = reports  # still read while they are written
            try:
                if reports:
                    await self.write(list(reports.values()))
            except IntegrityError:  # another server inserted one of them meanwhile
                await self.write(list(reports.values()))
            except Exception:
                log.exception("task_ledger.write_failed", reports=len(reports))
            finally:
                self._writing = {}
            for delivery in deliveries:
                with contextlib.suppress(TransportClosed):
                    await delivery.ack()

    async def write(self, reports: list[StateReport]) -> None:
        """Store `reports` (one per task id) where they say more than the rows do: one read,
        then the new rows and the changed ones, each as one executemany (SQLAlchemy Core, not
        the ORM's unit of work: this runs for every task the mesh runs)."""
        async with self.database.session(SCHEMA) as session:
            stored = {row.task_id: _report(row) for row in await session.execute(
                select(TABLE).where(TABLE.c.task_id.in_([r.task_id for r in reports])))}
            new, changed = [], []
            for report in reports:
                old = stored.get(report.task_id)
                if old is None:
                    new.append(_values(report))
                elif merge(old, report):
                    changed.append({**_values(report, old), "key": report.task_id})
            if new:
                await session.execute(insert(TABLE), new)
            if changed:
                await session.execute(
                    update(TABLE).where(TABLE.c.task_id == bindparam("key")), changed)
            await session.commit()

    async def purge(self) -> int:
        """Delete the rows unchanged for longer than the retention; how many went."""
        cutoff = wire.now_ms() - int(self.retention * 1000)
        async with self.database.session(SCHEMA) as session:
            result: Any = await session.execute(
                delete(TaskLedgerRow).where(TaskLedgerRow.updated_ms < cutoff))
            await session.commit()
            return int(result.rowcount or 0)


    # -- reading ---------------------------------------------------------------------------

    async def read(self, task_id: str) -> TaskRecord:
        """What is known of `task_id` (state `unknown` if nothing); ValueError for an id that
        cannot be one."""
        check_task_id(task_id)
        unwritten = [r for r in (self._writing.get(task_id), self._pending.get(task_id)) if r]
        async with self.database.session(SCHEMA) as session:
            row = (await session.execute(select(TABLE).where(TABLE.c.task_id == task_id))).first()
        stored = None if row is None else _report(row)
        for report in unwritten:  # taken before the read: a flush may have written them since
            if merge(stored, report):
                stored = report
        if stored is None or (stored.at_ms < wire.now_ms() - self.retention * 1000):
            return TaskRecord(task_id=task_id, state=UNKNOWN)
        return record_of(stored)
