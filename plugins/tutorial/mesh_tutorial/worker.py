"""The tutorial on the worker, which runs its tasks (where Peek ran Celery)."""

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from mesh import Empty, PluginPart, current_task, handles
from mesh_tutorial.contract import NotFound, OutOfRange, StringInt, StringIntId, TutorialContract
from mesh_tutorial.models import AppliedTaskRow, StringIntRow


class TutorialWorker(PluginPart):
    """The tutorial's part on the worker."""

    @handles(TutorialContract.double_int)
    async def double_int(self, request: StringIntId) -> StringInt:
        """Doubles int1 once per idempotency key.

        A task is delivered at least once: after a crash, or a lost connection at the wrong
        moment, it can run again. Doubling twice would be wrong, so the key goes into the
        database in the same transaction as the change, and first: a second run with the same
        key, even one running at the same moment, fails to insert it and changes nothing.
        """
        info = current_task()
        assert info is not None
        async with self.ctx.session() as session:
            session.add(AppliedTaskRow(key=info.idempotency_key))
            try:
                await session.flush()  # waits for a concurrent run with the same key, if any
            except IntegrityError:
                await session.rollback()  # applied already: report the row as it is
            else:
                changed = await session.execute(  # only while twice int1 is still 32-bit
                    update(StringIntRow).where(StringIntRow.id == request.id,
                                               StringIntRow.int1.between(-(2**30), 2**30 - 1))
                    .values(int1=StringIntRow.int1 * 2))
                if changed.rowcount == 0:  # type: ignore[attr-defined]
                    await session.rollback()
                    if await session.get(StringIntRow, request.id) is not None:
                        raise OutOfRange(f"twice int1 of {request.id} leaves the 32-bit range")
                    raise NotFound(f"no StringInt with id {request.id}")
                await session.commit()  # the change and the key, together or not at all
            row = await session.get(StringIntRow, request.id, populate_existing=True)
        if row is None:
            raise NotFound(f"no StringInt with id {request.id}")
        await self.ctx.stub(TutorialContract).rows_changed(Empty())
        return StringInt(id=row.id, string1=row.string1, int1=row.int1)
