"""The plugin's tables, in a schema of its own: no other plugin's migrations touch it."""

${from_import("sqlalchemy", ["MetaData", "String"])}
${from_import("sqlalchemy.orm", ["DeclarativeBase", "Mapped", "mapped_column"])}


class Base(DeclarativeBase):
${wrap("    metadata = MetaData(", [f'schema="{schema}"', 'naming_convention={"pk": "pk_%(table_name)s"}'], ")")}


class NoteRow(Base):
    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(500))
