"""The platform's record of applied action ids (mesh/platform/applied.py, migration 0005) on
SQLite and PostgreSQL: the id and the result commit with the effect or not at all, per
user."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel
from sqlalchemy import func, insert, select

from mesh.errors import AlreadyApplied, Expired, InvalidRequest
from mesh.platform import applied as applied_module
from mesh.platform.applied import TABLE, AppliedActions
from mesh.platform.models import SCHEMA, PluginStateRow
from mesh.platform.store import platform_storage
from mesh.plugin.plugin_set import PluginSet
from mesh.rpc.once import ActionKey, before_calling_out
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator


class Done(BaseModel):
    n: int


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, shared=(SCHEMA,))
    result = await Migrator.for_plugins(database, PluginSet([]),
                                        first=[platform_storage()]).upgrade_all()
    assert not result.failed
    yield database
    await database.close()


def key(action_id: str = "id-0000001", user: str = "ada", **changes: object) -> ActionKey:
    fields: dict[str, object] = {"user": user, "action_id": action_id, "action": "p.act",
                                 "made_ms": int(time.time() * 1000), **changes}
    return ActionKey(**fields)  # type: ignore[arg-type]


async def effects(database: Database) -> int:
    """Rows the processors below wrote (their effect, in the platform schema for the test)."""
    async with database.session(SCHEMA) as session:
        return int(await session.scalar(select(func.count()).select_from(PluginStateRow)) or 0)


async def won(database: Database, competitor: ActionKey) -> None:
    async with database.session(SCHEMA) as other:
        await other.execute(insert(TABLE).values(
            user=competitor.user, action_id=competitor.action_id, action=competitor.action,
            applied_ms=competitor.made_ms, result=Done(n=-1).model_dump_json()))
        await other.commit()


async def effects_elsewhere(database: Database) -> int:
    """The effects another task sees: those committed."""
    return await asyncio.create_task(effects(database), context=contextvars.Context())


def processor(database: Database, runs: list[int], *, fail_after: bool = False,
              competitor: ActionKey | None = None,
              call_out: list[int] | None = None):  # type: ignore[no-untyped-def]
    async def run() -> Done:
        runs.append(1)
        if competitor is not None:  # another push of the same id committed meanwhile
            await asyncio.create_task(won(database, competitor), context=contextvars.Context())
        async with database.session(SCHEMA) as session:
            session.add(PluginStateRow(plugin=f"p{len(runs)}-{time.monotonic_ns()}",
                                       enabled=True, changed_at=datetime.now(UTC),
                                       changed_by="t"))
            await session.commit()
        if call_out is not None:  # an RPC out of the processor: its effect commits first
            await before_calling_out()
            call_out.append(await effects_elsewhere(database))
        if fail_after:
            raise RuntimeError("failed after committing")
        return Done(n=len(runs))
    return run


async def test_an_id_applies_once_per_user(database: Database) -> None:
    applied = AppliedActions(database, retention=60, skew=5)
    runs: list[int] = []
    first = await applied.apply(key(), processor(database, runs), Done)
    again = await applied.apply(key(), processor(database, runs), Done)
    assert first == again == Done(n=1) and len(runs) == 1
    other_user = await applied.apply(key(user="bob"), processor(database, runs), Done)
    assert other_user == Done(n=2) and await effects(database) == 2


async def test_a_push_that_lost_the_race_is_rolled_back_and_gets_the_first_result(
        database: Database) -> None:
    applied = AppliedActions(database, retention=60, skew=5)
    runs: list[int] = []
    lost = await applied.apply(key(), processor(database, runs, competitor=key()), Done)
    assert lost == Done(n=-1)  # the winner's result
    assert await effects(database) == 0  # its own effect was rolled back with the record


async def test_failures_before_and_after_the_commit(database: Database) -> None:
    applied = AppliedActions(database, retention=60, skew=5)
    runs: list[int] = []

    async def refuses() -> Done:
        raise InvalidRequest("no")

    with pytest.raises(InvalidRequest):
        await applied.apply(key("id-refused"), refuses, Done)
    assert await applied.apply(key("id-refused"), processor(database, runs), Done) == Done(n=1)
    with pytest.raises(RuntimeError):
        await applied.apply(key("id-failing"), processor(database, runs, fail_after=True), Done)
    assert await effects(database) == 1  # its effect was rolled back: the id is not recorded
    assert await applied.apply(key("id-failing"), processor(database, runs), Done) == Done(n=3)
    # a processor that called out had committed its effect (and the id) before the call
    seen: list[int] = []
    with pytest.raises(RuntimeError):
        await applied.apply(key("id-out"), processor(database, runs, call_out=seen,
                                                     fail_after=True), Done)
    assert seen == [3]  # another task saw the effect before the processor went on
    with pytest.raises(AlreadyApplied):  # applied, so never run again, but no result to give
        await applied.apply(key("id-out"), processor(database, runs), Done)
    assert len(runs) == 4 and await effects(database) == 3


async def test_the_result_commits_with_the_effect(database: Database,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written after the processor's effect: a server that stopped right after it
    commits still answers a repeat with the result."""
    applied = AppliedActions(database, retention=60, skew=5)

    async def server_stopped(*args: object) -> bool:
        raise RuntimeError("the server stopped before writing the result")

    monkeypatch.setattr(applied, "_keep", server_stopped)
    monkeypatch.setattr(applied_module, "WAIT", 0.2)
    runs: list[int] = []
    first = await applied.apply(key("id-together"), processor(database, runs), Done)
    again = await applied.apply(key("id-together"), processor(database, runs), Done)
    assert first == again == Done(n=1) and len(runs) == 1
    async with database.session(SCHEMA) as session:
        stored = await session.scalar(select(TABLE.c.result).where(
            TABLE.c.action_id == "id-together"))
    assert stored == Done(n=1).model_dump_json()


async def test_expired_future_reused_and_purged(database: Database) -> None:
    applied = AppliedActions(database, retention=60, skew=5)
    runs: list[int] = []
    now = int(time.time() * 1000)
    with pytest.raises(Expired):
        await applied.apply(key(made_ms=now - 61_000), processor(database, runs), Done)
    with pytest.raises(InvalidRequest, match="future"):
        await applied.apply(key(made_ms=now + 6_000), processor(database, runs), Done)
    await applied.apply(key("id-reused"), processor(database, runs), Done)
    with pytest.raises(InvalidRequest, match="p.act"):
        await applied.apply(ActionKey("ada", "id-reused", "p.other", now),
                            processor(database, runs), Done)
    assert len(runs) == 1
    await applied.purge(now + 66_000)  # past retention and skew
    async with database.session(SCHEMA) as session:
        assert await session.scalar(select(func.count()).select_from(TABLE)) == 0
