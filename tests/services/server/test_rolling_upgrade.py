"""A rolling upgrade: two servers run plugin `rolling` at 1.0.0; each in turn stops (draining
its calls) and comes back at 1.1.0, a compatible upgrade, so for a while the two versions
serve side by side. Callers built against 1.0.0 call all the while: every call is answered,
none fails, and answers come from both versions at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

import pytest
from mesh_fixture_rolling_v1.contract import Question, RollingContract

from mesh.catalog import build_catalog
from mesh.plugin.discovery import PluginSource, source_from_package
from mesh.plugin.plugin_set import PluginSet
from mesh.service import Service
from services.server.skew import breaking_changes, entries_of
from tests.conftest import Bus, eventually

pytestmark = pytest.mark.slow
CALLERS = 4


def rolling(version: str) -> PluginSource:
    return source_from_package("rolling", f"mesh_fixture_rolling_v{version}")


def test_the_two_versions_are_a_compatible_upgrade() -> None:
    """What an upload of 1.1.0 over 1.0.0 checks (services/server/skew.py): nothing breaks."""
    old, new = (entries_of(build_catalog(PluginSet([rolling(v)])), "rolling") for v in "12")
    assert old.keys() == new.keys() == {"rolling.answer"}
    assert breaking_changes(old, new) == []


async def test_callers_are_answered_throughout_a_rolling_upgrade(bus: Bus,
                                                                 tmp_path: Path) -> None:
    async def server(name: str, version: str) -> Service:
        return await bus.service("server", sources=[rolling(version)],
                                 data_dir=tmp_path / name)

    first, second = await server("a", "1"), await server("b", "1")
    caller = await bus.service("agent", sources=[])
    stub = RollingContract(caller.rpc_caller)
    answers: list[str] = []
    errors: list[BaseException] = []
    calling = True

    async def call(number: int) -> None:
        while calling:
            try:
                answer = await stub.answer(Question(text=f"caller {number}"))
            except Exception as exc:  # every failure is a finding
                errors.append(exc)
            else:
                assert answer.text == f"caller {number}"
                answers.append(answer.version)

    def since(mark: int) -> Counter[str]:
        return Counter(answers[mark:])

    loops = [asyncio.create_task(call(n)) for n in range(CALLERS)]
    try:
        await eventually(lambda: len(answers) >= 20)
        await first.stop()  # drains its calls; the other one serves meanwhile
        first = await server("a2", "2")
        mark = len(answers)
        await eventually(lambda: len(since(mark)) == 2 and min(since(mark).values()) >= 10,
                         timeout=15)  # both versions answer, side by side
        await second.stop()
        second = await server("b2", "2")
        mark = len(answers)
        await eventually(lambda: since(mark)["1.1.0"] >= 20, timeout=15)
    finally:
        calling = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*loops), 10)
    assert errors == []
    assert set(since(mark)) == {"1.1.0"}  # only 1.1.0 once both are upgraded
    assert Counter(answers)["1.0.0"] >= 20
