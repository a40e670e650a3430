"""The tutorial on the server, where its data lives: what people, devices, agents, workers and
other plugins ask of it."""

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Path
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import Empty, PluginPart, handles
from mesh.notification import to_followers
from mesh_tutorial.api import TutorialApi
from mesh_tutorial.contract import (
    AddIntValue,
    AgentStatus,
    Int1Crossed,
    IntResult,
    Ints,
    NotFound,
    OutOfRange,
    Setting,
    SettingKey,
    StringCapToggle,
    StringInt,
    StringIntChange,
    StringIntFields,
    StringIntId,
    StringIntList,
    StringIntQuery,
    StringIntSelector,
    TutorialContract,
    TutorialSettings,
)
from mesh_tutorial.models import SettingRow, StringIntRow

INT32 = range(-(2**31), 2**31)


def as_contract(row: StringIntRow) -> StringInt:
    return StringInt(id=row.id, string1=row.string1, int1=row.int1)


def rows_query(prefix: str | None) -> Select[StringIntRow]:
    query = select(StringIntRow).order_by(StringIntRow.id)
    if prefix:
        query = query.where(StringIntRow.string1.startswith(prefix, autoescape=True))
    return query


async def get_row(session: AsyncSession, string_int_id: int) -> StringIntRow:
    row = await session.get(StringIntRow, string_int_id)
    if row is None:
        raise NotFound(f"no StringInt with id {string_int_id}")
    return row


class TutorialServer(PluginPart):
    """The tutorial's part on the server."""

    async def load(self) -> None:
        self.agents_said: deque[str] = deque(maxlen=100)  # the latest, oldest first
        # Administrators edit the table through the admin API (Peek's admin_backend).
        admin = APIRouter(prefix="/string_ints")
        admin.get("", response_model=StringIntList)(self.admin_list)
        admin.post("", response_model=StringInt, status_code=201)(self.add_string_int)
        admin.patch("", response_model=StringInt)(self.change_string_int)
        admin.delete("/{string_int_id}", status_code=204)(self.admin_delete)
        self.ctx.add_admin_routes(admin)
        # Other plugins on the server use the API (Peek's publishedServerApi).
        self.ctx.publish_api(ServerApi(self))

    @asynccontextmanager
    async def changing_rows(self) -> AsyncIterator[AsyncSession]:
        """A session to change rows in, committed when the block ends."""
        async with self.ctx.session() as session:
            yield session
            await session.commit()
        await self.changed()

    @handles(TutorialContract.list_string_ints)
    async def list_string_ints(self, request: StringIntQuery) -> StringIntList:
        query = rows_query(request.prefix)
        query = query.limit(self.ctx.settings.max_rows)
        async with self.ctx.session() as session:
            rows = (await session.scalars(query)).all()
        return StringIntList(items=[as_contract(row) for row in rows])

    @handles(TutorialContract.add_string_int)
    async def add_string_int(self, request: StringIntFields) -> StringInt:
        async with self.changing_rows() as session:
            row = StringIntRow(string1=request.string1, int1=request.int1)
            session.add(row)
        return as_contract(row)

    @handles(TutorialContract.change_string_int)
    async def change_string_int(self, request: StringIntChange) -> StringInt:
        async with self.changing_rows() as session:
            row = await get_row(session, request.id)
            before = row.int1
            if request.string1 is not None:
                row.string1 = request.string1
            if request.int1 is not None:
                row.int1 = request.int1
        await self.tell_if_crossed(before, as_contract(row))
        return as_contract(row)

    @handles(TutorialContract.delete_string_int)
    async def delete_string_int(self, request: StringIntId) -> Empty:
        async with self.changing_rows() as session:
            await session.delete(await get_row(session, request.id))
        return Empty()

    @handles(TutorialContract.get_setting)
    async def get_setting(self, request: SettingKey) -> Setting:
        async with self.ctx.session() as session:
            row = await session.get(SettingRow, request.key)
        if row is None:
            raise NotFound(f"no setting {request.key!r}")
        return Setting(key=row.key, value=row.value)

    @handles(TutorialContract.put_setting)
    async def put_setting(self, request: Setting) -> Setting:
        async with self.ctx.session() as session:
            await session.merge(SettingRow(key=request.key, value=request.value))
            await session.commit()
        return request

    async def admin_list(self) -> StringIntList:
        return await self.list_string_ints(StringIntQuery())

    async def admin_delete(self, string_int_id: int = Path(ge=1, lt=2**53)) -> None:
        await self.delete_string_int(StringIntId(id=string_int_id))

    async def on_settings(self, settings: TutorialSettings) -> None:
        """max_rows changed, and with it what the watchers see."""
        await self.changed()

    async def changed(self) -> None:
        """Rows changed: every watched selector of the topic gets its new payload."""
        await self.ctx.notify(TutorialContract.string_ints)

    @handles(TutorialContract.string_ints)
    async def provide_string_ints(self, selector: StringIntSelector) -> StringIntList:
        return await self.list_string_ints(StringIntQuery(prefix=selector.prefix))

    @handles(TutorialContract.add_int_value)
    async def add_int_value(self, action: AddIntValue) -> StringInt:
        async with self.changing_rows() as session:
            row = await get_row(session, action.string_int_id)
            if row.int1 + action.offset not in INT32:
                raise OutOfRange(f"int1 {row.int1} + {action.offset} leaves the 32-bit range")
            before = row.int1
            row.int1 += action.offset
        await self.tell_if_crossed(before, as_contract(row))
        return as_contract(row)

    async def tell_if_crossed(self, before: int, row: StringInt) -> None:
        """Tell the rows group's followers when int1 rises to the threshold or past it."""
        threshold = self.ctx.settings.int1_threshold
        if before < threshold <= row.int1:
            await self.ctx.send_notification(
                TutorialContract.int1_high, Int1Crossed(
                    id=row.id, string1=row.string1, int1=row.int1, threshold=threshold),
                to=to_followers())

    @handles(TutorialContract.string_cap_toggle)
    async def string_cap_toggle(self, action: StringCapToggle) -> StringInt:
        async with self.changing_rows() as session:
            row = await get_row(session, action.string_int_id)
            upper = row.string1.upper()
            row.string1 = row.string1.lower() if row.string1 == upper else upper
        return as_contract(row)

    @handles(TutorialContract.add_ints)
    async def add_ints(self, request: Ints) -> IntResult:
        return IntResult(result=request.val1 + request.val2)

    @handles(TutorialContract.update_status)
    async def update_status(self, request: AgentStatus) -> Empty:
        self.agents_said.append(request.text)
        self.ctx.log.info("tutorial.agent_said", text=request.text)
        return Empty()

    @handles(TutorialContract.ask_agent)
    async def ask_agent(self, request: Ints) -> IntResult:
        return await self.ctx.stub(TutorialContract).sub_ints(request)

    @handles(TutorialContract.rows_changed)
    async def rows_changed(self, request: Empty) -> Empty:
        await self.changed()
        return Empty()


class ServerApi(TutorialApi):
    """What other plugins on this server get from `ctx.api("tutorial", TutorialApi)`."""

    def __init__(self, part: TutorialServer) -> None:
        self._part = part

    async def string_ints(self, prefix: str | None = None) -> list[StringInt]:
        async with self._part.ctx.session() as session:
            rows = (await session.scalars(rows_query(prefix))).all()
        return [as_contract(row) for row in rows]
