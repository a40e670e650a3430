"""The tutorial on the server: StringInt and settings in its own schema, the live StringInt
topic, and the actions devices push to change rows."""

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import Empty, PluginPart, handles
from mesh_tutorial.contract import (
    AddIntValue,
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


async def get_row(session: AsyncSession, string_int_id: int) -> StringIntRow:
    row = await session.get(StringIntRow, string_int_id)
    if row is None:
        raise NotFound(f"no StringInt with id {string_int_id}")
    return row


class TutorialServer(PluginPart):
    settings_seen: int | None = None

    async def load(self) -> None:
        """Administrators edit the StringInt table from the admin API (Peek 8.9.11)."""
        admin = APIRouter()
        admin.get("/string_ints", response_model=StringIntList)(self.admin_list)
        admin.post("/string_ints", response_model=StringInt, status_code=201)(
            self.add_string_int)
        self.ctx.add_admin_routes(admin)

    async def admin_list(self) -> StringIntList:
        return await self.list_string_ints(StringIntQuery())

    async def on_settings(self, settings: TutorialSettings) -> None:
        """The rows shown depend on max_rows: refresh every watcher."""
        self.settings_seen = settings.max_rows
        await self.changed()

    async def changed(self) -> None:
        """Rows changed: every watched selector of the topic gets its new payload."""
        await self.ctx.notify(TutorialContract.string_ints)

    @handles(TutorialContract.string_ints)
    async def provide_string_ints(self, selector: StringIntSelector) -> StringIntList:
        return await self.list_string_ints(StringIntQuery(prefix=selector.prefix))

    @handles(TutorialContract.add_int_value)
    async def add_int_value(self, action: AddIntValue) -> StringInt:
        async with self.ctx.session() as session:
            row = await get_row(session, action.string_int_id)
            if row.int1 + action.offset not in INT32:
                raise OutOfRange(f"int1 {row.int1} + {action.offset} leaves the 32-bit range")
            row.int1 += action.offset
            await session.commit()
            result = as_contract(row)
        await self.changed()
        return result

    @handles(TutorialContract.string_cap_toggle)
    async def string_cap_toggle(self, action: StringCapToggle) -> StringInt:
        async with self.ctx.session() as session:
            row = await get_row(session, action.string_int_id)
            upper = row.string1.upper()
            row.string1 = row.string1.lower() if row.string1 == upper else upper
            await session.commit()
            result = as_contract(row)
        await self.changed()
        return result

    @handles(TutorialContract.list_string_ints)
    async def list_string_ints(self, request: StringIntQuery) -> StringIntList:
        settings: TutorialSettings = self.ctx.settings
        query = select(StringIntRow).order_by(StringIntRow.id).limit(settings.max_rows)
        if request.prefix:
            query = query.where(StringIntRow.string1.startswith(request.prefix, autoescape=True))
        async with self.ctx.session() as session:
            rows = (await session.scalars(query)).all()
        return StringIntList(items=[as_contract(row) for row in rows])

    @handles(TutorialContract.add_string_int)
    async def add_string_int(self, request: StringIntFields) -> StringInt:
        async with self.ctx.session() as session:
            row = StringIntRow(string1=request.string1, int1=request.int1)
            session.add(row)
            await session.commit()
            result = as_contract(row)
        await self.changed()
        return result

    @handles(TutorialContract.change_string_int)
    async def change_string_int(self, request: StringIntChange) -> StringInt:
        async with self.ctx.session() as session:
            row = await get_row(session, request.id)
            if request.string1 is not None:
                row.string1 = request.string1
            if request.int1 is not None:
                row.int1 = request.int1
            await session.commit()
            result = as_contract(row)
        await self.changed()
        return result

    @handles(TutorialContract.delete_string_int)
    async def delete_string_int(self, request: StringIntId) -> Empty:
        async with self.ctx.session() as session:
            row = await get_row(session, request.id)
            await session.delete(row)
            await session.commit()
        await self.changed()
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
