% if storage:
"""The ${name} plugin on the worker, which runs tasks.

This task reads the notes table. A task is delivered at least once, so it may run twice;
reading twice does no harm (a task that writes must make its effect happen once: mesh's
tutorial plugin shows how).
"""

${from_import("mesh", ["Empty", "PluginPart", "handles"])}
${from_import("sqlalchemy", ["func", "select"])}

${from_import(f"{package}.contract", [f"{cls}Contract", "NoteCount"])}
${from_import(f"{package}.models", ["NoteRow"])}


class ${cls}Worker(PluginPart):
    @handles(${cls}Contract.count_notes)
    async def count_notes(self, request: Empty) -> NoteCount:
        query = select(func.count(NoteRow.id),
                       func.coalesce(func.sum(func.length(NoteRow.text)), 0))
        async with self.ctx.session() as session:
            notes, characters = (await session.execute(query)).one()
        return NoteCount(notes=notes, characters=characters)
% else:
"""The ${name} plugin on the worker, which runs tasks.

This task counts words. A task is delivered at least once, so it may run twice; this one
gives the same result each time.
"""

${from_import("mesh", ["PluginPart", "handles"])}

${from_import(f"{package}.contract", [f"{cls}Contract", "Text", "WordCount"])}


class ${cls}Worker(PluginPart):
    @handles(${cls}Contract.count_words)
    async def count_words(self, request: Text) -> WordCount:
        return WordCount(words=len(request.text.split()))
% endif
