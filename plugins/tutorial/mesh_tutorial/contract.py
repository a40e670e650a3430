"""The tutorial's contract: everything it offers on the bus, as data."""

from typing import Annotated

from pydantic import BaseModel, Field

from mesh.contract import Contract, Empty, action, notification, rpc, task, topic
from mesh.errors import RpcError

# A row's id: one every JSON reader holds exactly (below 2**53).
RowId = Annotated[int, Field(ge=1, lt=2**53)]


class StringIntFields(BaseModel):
    string1: str = Field(min_length=1, max_length=50)
    int1: int = Field(ge=-(2**31), lt=2**31)


class StringInt(StringIntFields):
    id: int


class StringIntId(BaseModel):
    id: RowId


class StringIntChange(BaseModel):
    id: RowId
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


class TutorialSettings(BaseModel):
    """Edited by administrators; every service running the tutorial gets changes live."""

    max_rows: int = Field(default=100, ge=1, le=10_000,
                          description="The most rows a list or the live topic returns.")
    int1_threshold: int = Field(default=100, description="A row whose int1 rises to this "
                                "or past it tells the followers of the rows group.")


class TutorialPersonalSettings(BaseModel):
    """Each person's own: they change it from a device; the plugin reads it for them."""

    rows_per_page: int = Field(default=20, ge=5, le=200)


class Int1Crossed(BaseModel):
    """What the int1_high notification says; its templates insert these fields by name."""

    id: int
    string1: str
    int1: int
    threshold: int


class StringIntSelector(BaseModel):
    """Which rows a device watches (Peek's TupleSelector)."""

    prefix: str | None = Field(default=None, max_length=50,
                               description="Only rows whose string1 starts so; all if unset.")


class AddIntValue(BaseModel):
    """Add `offset` to a row's int1 (Peek's AddIntValueActionTuple)."""

    string_int_id: int
    offset: int = Field(ge=-(2**31), lt=2**31)


class StringCapToggle(BaseModel):
    """Toggle a row's string1 between upper and lower case (Peek's StringCapToggleActionTuple)."""

    string_int_id: int


class OutOfRange(RpcError):
    code = "tutorial.out_of_range"


class Ints(BaseModel):
    val1: int
    val2: int = 9


class IntResult(BaseModel):
    result: int


class AgentStatus(BaseModel):
    text: str = Field(min_length=1, max_length=200)


class TaskFailed(RpcError):
    code = "tutorial.task_failed"


VIEW, CHANGE = "tutorial/rows/view", "tutorial/rows/change"  # declared in plugin.toml


class TutorialContract(Contract, plugin="tutorial", settings=TutorialSettings,
                       personal_settings=TutorialPersonalSettings):
    """The tutorial's RPCs, topic, actions and task; `mesh contracts list` shows them."""

    list_string_ints = rpc(StringIntQuery, StringIntList, service="server", permission=VIEW,
                           doc="The StringInt rows, ordered by id.")
    add_string_int = rpc(StringIntFields, StringInt, service="server", devices=True,
                         permission=CHANGE)
    change_string_int = rpc(StringIntChange, StringInt, service="server", errors=[NotFound],
                            permission=CHANGE)
    delete_string_int = rpc(StringIntId, Empty, service="server", errors=[NotFound],
                            devices=True, permission=CHANGE)
    get_setting = rpc(SettingKey, Setting, service="server", errors=[NotFound])
    put_setting = rpc(Setting, Setting, service="server")

    string_ints = topic(StringIntSelector, StringIntList, permission=VIEW,
                        doc="The StringInt rows, live, ordered by id.")

    add_int_value = action(AddIntValue, StringInt, errors=[NotFound, OutOfRange],
                           permission=CHANGE)
    string_cap_toggle = action(StringCapToggle, StringInt, errors=[NotFound], permission=CHANGE)

    add_ints = rpc(Ints, IntResult, service="server", callers=["agent"],
                   doc="val1 + val2; only agents may call it (Peek's RpcForAgent.addInts).")
    update_status = rpc(AgentStatus, Empty, service="server", callers=["agent"],
                        doc="An agent says how it is doing; the server logs it.")
    sub_ints = rpc(Ints, IntResult, service="agent", callers=["server"],
                   doc="val1 - val2, on an agent; only the server may call it.")
    ask_agent = rpc(Ints, IntResult, service="server",
                    doc="The server asks an agent for sub_ints and passes the answer on.")

    double_int = task(StringIntId, StringInt, max_attempts=3, backoff=0.5, time_limit=30,
                      doc="Doubles a row's int1, once per task even if the task runs twice.")
    double_string_int = rpc(StringIntId, StringInt, service="client", devices=True,
                            timeout=30, errors=[TaskFailed], permission=CHANGE,
                            doc="Queues double_int for a worker and answers with its result.")
    rows_changed = rpc(Empty, Empty, service="server", callers=["worker"],
                       doc="A worker changed rows: the server tells their watchers.")

    int1_high = notification(Int1Crossed, title="{string1} reached {int1}",
                             body="Row {id} crossed the threshold {threshold}.", group="rows",
                             permission=VIEW, doc="A row's int1 rose to the threshold.")
