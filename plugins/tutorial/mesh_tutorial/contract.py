"""The tutorial's contract: StringInt rows and settings over RPC, and a task on the worker."""

from pydantic import BaseModel, Field

from mesh.contract import Contract, Empty, rpc, task
from mesh.errors import RpcError


class StringIntFields(BaseModel):
    string1: str = Field(min_length=1, max_length=50)
    int1: int = Field(ge=-(2**31), lt=2**31)


class StringInt(StringIntFields):
    id: int


class StringIntId(BaseModel):
    id: int


class StringIntChange(BaseModel):
    id: int
    string1: str | None = Field(default=None, min_length=1, max_length=50)
    int1: int | None = Field(default=None, ge=-(2**31), lt=2**31)


class StringIntQuery(BaseModel):
    prefix: str | None = Field(default=None, description="Only rows whose string1 starts so.")


class StringIntList(BaseModel):
    items: list[StringInt]


class SettingKey(BaseModel):
    key: str = Field(min_length=1, max_length=50)


class Setting(SettingKey):
    value: str


class NotFound(RpcError):
    code = "tutorial.not_found"


class TutorialContract(Contract, plugin="tutorial"):
    list_string_ints = rpc(StringIntQuery, StringIntList, service="server",
                           doc="The StringInt rows, ordered by id.")
    add_string_int = rpc(StringIntFields, StringInt, service="server")
    change_string_int = rpc(StringIntChange, StringInt, service="server", errors=[NotFound])
    delete_string_int = rpc(StringIntId, Empty, service="server", errors=[NotFound])
    get_setting = rpc(SettingKey, Setting, service="server", errors=[NotFound])
    put_setting = rpc(Setting, Setting, service="server")
    double_int = task(StringIntId, StringInt, max_attempts=5, backoff=2.0, time_limit=30,
                      doc="Doubles a row's int1, once per task even if the task runs twice.")
