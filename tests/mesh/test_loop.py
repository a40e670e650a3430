"""The services' event loop: uvloop by default where it is installed, asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest

from mesh import loop
from mesh.config import MeshSettings


async def kind() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_runs_on_uvloop_and_asyncio_on_asyncios_loop() -> None:
    assert loop.run(kind(), "auto") == "uvloop"
    assert loop.run(kind(), "uvloop") == "uvloop"
    assert loop.run(kind(), "asyncio") == "asyncio"


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert loop.loop_factory("auto") is None
    with pytest.raises(ValueError, match="uvloop is not installed"):
        MeshSettings(event_loop="uvloop")
