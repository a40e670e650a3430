"""Personal settings in the platform schema: one row per user and plugin with the values the
user chose, validated against the plugin's personal settings model; a field the user never
set takes the model's default (so a new default reaches everyone who kept the old one)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from mesh.platform.models import SCHEMA, PersonalSettingsRow
from mesh.storage.database import Database


def effective(model: type[BaseModel], chosen: dict[str, Any]) -> BaseModel:
    """The user's values over the model's defaults; a stored value the model no longer accepts
    (the plugin changed it) falls back to the default."""
    known = {k: v for k, v in chosen.items() if k in model.model_fields}
    try:
        return model.model_validate(known)
    except ValueError:
        return model()


class PersonalStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def chosen(self, user: str, plugin: str) -> dict[str, Any]:
        async with self.database.session(SCHEMA) as session:
            row = await session.scalar(select(PersonalSettingsRow).where(
                PersonalSettingsRow.user == user, PersonalSettingsRow.plugin == plugin))
            return dict(row.values) if row is not None else {}

    async def change(self, user: str, plugin: str, model: type[BaseModel],
                     values: dict[str, Any]) -> BaseModel:
        """Validate `values` (only the fields given; pydantic's ValidationError, or ValueError
        naming unknown fields), store them with the user's earlier choices, and return the
        effective settings."""
        unknown = sorted(set(values) - set(model.model_fields))
        if unknown:
            raise ValueError(f"{model.__name__} has no fields {', '.join(unknown)}")
        chosen = {**await self.chosen(user, plugin), **values}
        settings = model.model_validate(chosen)
        dumped = settings.model_dump(mode="json")
        stored = {k: dumped[k] for k in chosen if k in dumped}
        async with self.database.session(SCHEMA) as session:
            await session.merge(PersonalSettingsRow(user=user, plugin=plugin, values=stored,
                                                    updated_at=datetime.now(UTC)))
            await session.commit()
        return settings
