<%
    contract_names = [f"{cls}Contract", f"{cls}Settings", "GreetReply", "GreetRequest"]
    if storage:
        contract_names += ["Note", "NoteList", "NoteText"]
%>\
"""The ${name} plugin on the server.

% if storage:
The server is where plugins keep their state and logic: this part greets people, and keeps
notes in the plugin's own schema.
% else:
The server is where plugins keep their state and logic: this part greets people.
% endif
"""

${from_import("mesh", ["Empty", "PluginPart", "handles"] if storage else ["PluginPart", "handles"])}
% if storage:
${from_import("sqlalchemy", ["select"])}
% endif

${from_import(f"{package}.contract", contract_names)}
% if storage:
${from_import(f"{package}.models", ["NoteRow"])}
% endif


class ${cls}Server(PluginPart):
    async def on_settings(self, settings: ${cls}Settings) -> None:
        """An administrator changed the settings; `self.ctx.settings` has them already."""
        self.ctx.log.info("settings_changed", greeting=settings.greeting)

    @handles(${cls}Contract.greet)
    async def greet(self, request: GreetRequest) -> GreetReply:
        settings: ${cls}Settings = self.ctx.settings
        return GreetReply(greeting=f"{settings.greeting}, {request.name}!",
                          served_by=self.ctx.instance)
% if storage:

    @handles(${cls}Contract.add_note)
    async def add_note(self, request: NoteText) -> Note:
        async with self.ctx.session() as session:
            row = NoteRow(text=request.text)
            session.add(row)
            await session.commit()
            return Note(id=row.id, text=row.text)

    @handles(${cls}Contract.list_notes)
    async def list_notes(self, request: Empty) -> NoteList:
        settings: ${cls}Settings = self.ctx.settings
        query = select(NoteRow).order_by(NoteRow.id).limit(settings.max_notes)
        async with self.ctx.session() as session:
            rows = (await session.scalars(query)).all()
        return NoteList(items=[Note(id=row.id, text=row.text) for row in rows])
% endif
