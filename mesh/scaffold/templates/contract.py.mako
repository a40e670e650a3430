<%
    contract_imports = ["Contract"]
    if server or agent:
        contract_imports += ["rpc"]
    if worker:
        contract_imports += ["task"]
    if (server and storage) or agent or (worker and storage):
        contract_imports += ["Empty"]
    pydantic_imports = ["BaseModel"] + (["Field"] if server or (worker and not storage) else [])
%>\
"""The contract of ${name}: its settings and what it serves.

Pure data: any service, plugin or script can import it without side effects.
"""

${from_import("mesh.contract", contract_imports)}
${from_import("pydantic", pydantic_imports)}


class ${cls}Settings(BaseModel):
    """Edited by administrators in the admin API and page; every service running the plugin
% if server:
    gets changes live. Every field needs a default."""

    greeting: str = Field(default="Hello", min_length=1, max_length=50,
                          description="How greet begins its reply.")
% else:
    gets changes live (`self.ctx.settings`, `on_settings`). Every field needs a default."""
% endif
% if server and storage:
    max_notes: int = Field(default=100, ge=1, le=10_000,
                           description="The most notes list_notes returns.")
% endif
% if server:


class GreetRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class GreetReply(BaseModel):
    greeting: str
    served_by: str
% endif
% if server and storage:


class NoteText(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class Note(NoteText):
    id: int


class NoteList(BaseModel):
    items: list[Note]
% endif
% if agent:


class AgentInfo(BaseModel):
    """Where the agent runs: agents are the services that talk to systems outside the mesh."""

    instance: str
    host: str
    pid: int
% endif
% if worker and storage:


class NoteCount(BaseModel):
    notes: int
    characters: int
% elif worker:


class Text(BaseModel):
    text: str = Field(max_length=100_000)


class WordCount(BaseModel):
    words: int
% endif


${wrap(f"class {cls}Contract(", ["Contract", f'plugin="{name}"', f"settings={cls}Settings"], "):")}
% if not (server or agent or worker):
    """No RPCs yet: add them here, as `name = rpc(Request, Reply, service=...)`."""
% endif
% if server:
% if ui:
    greet = rpc(GreetRequest, GreetReply, service="server", devices=True,
                permission="${name}/screens/use",
                doc="Greets someone, with the greeting the settings give; devices may too.")
% else:
    greet = rpc(GreetRequest, GreetReply, service="server",
                doc="Greets someone, with the greeting the settings give.")
% endif
% endif
% if server and storage:
    add_note = rpc(NoteText, Note, service="server", doc="Keeps a note.")
    list_notes = rpc(Empty, NoteList, service="server",
                     doc="The notes, oldest first, at most max_notes of them.")
% endif
% if agent:
    agent_info = rpc(Empty, AgentInfo, service="agent", callers=["server"],
                     doc="Where the agent runs; only the server may ask.")
% endif
% if worker and storage:
    count_notes = task(Empty, NoteCount, max_attempts=3, backoff=1.0, time_limit=30,
                       doc="Counts the notes and their characters, on the worker.")
% elif worker:
    count_words = task(Text, WordCount, max_attempts=3, backoff=1.0, time_limit=30,
                       doc="Counts the words of a text, on the worker.")
% endif
