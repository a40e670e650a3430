"""The tutorial on the server: StringInt and settings, stored in its own schema."""

from sqlalchemy import select

from mesh import Empty, PluginPart, handles
from mesh_tutorial.contract import (
    NotFound,
    Setting,
    SettingKey,
    StringInt,
    StringIntChange,
    StringIntFields,
    StringIntId,
    StringIntList,
    StringIntQuery,
    TutorialContract,
)
from mesh_tutorial.models import SettingRow, StringIntRow


def as_contract(row: StringIntRow) -> StringInt:
    return StringInt(id=row.id, string1=row.string1, int1=row.int1)


class TutorialServer(PluginPart):
    @handles(TutorialContract.list_string_ints)
    async def list_string_ints(self, request: StringIntQuery) -> StringIntList:
        query = select(StringIntRow).order_by(StringIntRow.id)
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
            return as_contract(row)

    @handles(TutorialContract.change_string_int)
    async def change_string_int(self, request: StringIntChange) -> StringInt:
        async with self.ctx.session() as session:
            row = await session.get(StringIntRow, request.id)
            if row is None:
                raise NotFound(f"no StringInt with id {request.id}")
            if request.string1 is not None:
                row.string1 = request.string1
            if request.int1 is not None:
                row.int1 = request.int1
            await session.commit()
            return as_contract(row)

    @handles(TutorialContract.delete_string_int)
    async def delete_string_int(self, request: StringIntId) -> Empty:
        async with self.ctx.session() as session:
            row = await session.get(StringIntRow, request.id)
            if row is None:
                raise NotFound(f"no StringInt with id {request.id}")
            await session.delete(row)
            await session.commit()
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
