"""The loop that keeps a platform table within its retention: the task ledger's and the
notifications' (each with its own `purge`, run every `every` seconds at most)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def purge_forever(purge: Callable[[], Awaitable[int]], every: float, log: Any,
                        event: str) -> None:
    """Run `purge` again and again; a failure is logged (`<event>.purge_failed`) and the loop
    goes on, rows removed are logged as `<event>.purged`."""
    while True:
        await asyncio.sleep(every)
        try:
            gone = await purge()
        except Exception:
            log.exception(f"{event}.purge_failed")
        else:
            if gone:
                log.info(f"{event}.purged", rows=gone)
