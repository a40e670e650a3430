"""The event loop a service runs on: uvloop where it is installed (the default, `auto`), else
asyncio's own. uvloop shortens every message's trip through the loop; measured by
`python -m bench tasks` and `python -m bench rpc`, which run services with the default."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """None means asyncio's default loop (MeshSettings refuses `uvloop` where it is missing)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
