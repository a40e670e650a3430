"""Database.exclusive: one holder at a time across Database objects (so across processes and
servers), on SQLite files and on PostgreSQL; other names do not wait."""

from __future__ import annotations

import asyncio

from mesh.storage.database import Database


async def test_a_second_holder_waits_for_the_first(db_url: str) -> None:
    one, two = Database(db_url), Database(db_url)
    order: list[str] = []
    try:
        async def hold(database: Database, name: str, key: int, label: str,
                       seconds: float) -> None:
            async with database.exclusive(name, key):
                order.append(f"{label} in")
                await asyncio.sleep(seconds)
                order.append(f"{label} out")

        first = asyncio.create_task(hold(one, "work", 4242, "first", 0.3))
        await asyncio.sleep(0.1)  # the first holds it now
        await asyncio.gather(hold(two, "work", 4242, "second", 0),
                             hold(two, "other", 4343, "other", 0))
        await first
        assert order.index("first out") < order.index("second in")
        assert order.index("other out") < order.index("first out")  # another lock: no wait
    finally:
        await one.close()
        await two.close()
