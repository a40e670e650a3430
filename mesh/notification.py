"""Notification templates: what a plugin can tell a person, declared in its contract as data.

A template has a typed payload, a title and a body that may insert the payload's fields by
name (`"Row {name} is at {value}"`), a group people follow or unfollow, whether the group is
followed by default, and the permission a person needs to see it. Translations live in the
plugin's UI catalogs (`notifications.<name>.title`, `notifications.<name>.body`, the same
`i18n/<locale>.json` files its screens use); each is rendered in the recipient's language.

The template syntax is deliberately tiny: `{field}` inserts a field of the payload, `{{` and
`}}` are literal braces, and nothing else is accepted: no attribute or item access, no
format specs, no conversions, no positional fields. A declared template breaking that is a
ValueError when the contract is defined; a translation breaking it is never used (the declared
text is shown instead). Rendering concatenates text, it never calls `str.format`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import Formatter
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field, model_validator

from mesh.permissions import check_address

PayT = TypeVar("PayT", bound=BaseModel)
GROUP = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEMPLATE = 2000


class TemplateError(ValueError):
    """A template that inserts something other than a payload field, or is malformed."""


def template_fields(text: str, allowed: Sequence[str]) -> list[str]:
    """The fields `text` inserts, in order; TemplateError unless each is one of `allowed`
    and the text uses no other template feature."""
    if len(text) > MAX_TEMPLATE:
        raise TemplateError(f"a template is at most {MAX_TEMPLATE} characters")
    try:
        parts = list(Formatter().parse(text))
    except ValueError as exc:  # a lone brace
        raise TemplateError(f"{text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    found = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            raise TemplateError(f"{text!r}: {{{name}}} may not have a format spec or a "
                                "conversion: templates only insert fields")
        if name not in allowed:
            raise TemplateError(f"{text!r}: {{{name}}} is not a field of the payload "
                                f"(fields: {', '.join(allowed) or 'none'}); templates insert "
                                "fields by name only, no attributes, items or positions")
        found.append(name)
    return found


def render(text: str, values: Mapping[str, Any]) -> str:
    """`text` with each `{field}` replaced by `values[field]` (checked by template_fields)."""
    out = []
    for literal, name, _spec, _conversion in Formatter().parse(text):
        out.append(literal)
        if name is not None:
            value = values.get(name)
            out.append("" if value is None else str(value))
    return "".join(out)


@dataclass(eq=False)
class Notification(Generic[PayT]):
    """One notification template of a contract; `plugin` and `name` are filled in by the
    contract class."""

    payload: type[PayT]
    title: str
    body: str
    group: str
    followed: bool = True
    permission: str | None = None
    doc: str = ""
    plugin: str = field(default="", init=False)
    name: str = field(default="", init=False)

    @property
    def qualname(self) -> str:
        return f"{self.plugin}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def group_name(self) -> str:
        """The group as devices follow it: `<plugin>.<group>`."""
        return f"{self.plugin}.{self.group}"

    def text(self, part: str, catalogs: Mapping[str, Mapping[str, str]],
             locales: Sequence[str]) -> str:
        """The `title` or `body` template in the first of `locales` whose catalog translates
        it with nothing but the payload's fields; else the declared one."""
        fields = list(self.payload.model_fields)
        for locale in locales:
            candidate = catalogs.get(locale, {}).get(f"notifications.{self.name}.{part}")
            if not candidate:
                continue
            try:
                template_fields(candidate, fields)
            except TemplateError:
                continue
            return candidate
        return str(getattr(self, part))

    def rendered(self, payload: Mapping[str, Any],
                 catalogs: Mapping[str, Mapping[str, str]] | None = None,
                 locales: Sequence[str] = ()) -> tuple[str, str]:
        """Title and body for `payload` (its JSON form) in the best of `locales`."""
        catalogs = catalogs or {}
        return (render(self.text("title", catalogs, locales), payload),
                render(self.text("body", catalogs, locales), payload))


def notification(
    payload: type[PayT],
    *,
    title: str,
    body: str = "",
    group: str,
    followed: bool = True,
    permission: str | None = None,
    doc: str = "",
) -> Notification[PayT]:
    """Declare a notification template: `title` and `body` may insert the payload's fields
    as `{field}`; `group` is what people follow or unfollow (`followed`: whether they follow
    it until they say otherwise); `permission` is what a person needs to see it."""
    if not isinstance(payload, type) or not issubclass(payload, BaseModel):
        raise TypeError("a notification's payload is a pydantic model class")
    if not title:
        raise ValueError("a notification needs a title")
    fields = list(payload.model_fields)
    template_fields(title, fields)
    template_fields(body, fields)
    if not GROUP.match(group):
        raise ValueError(f"group {group!r} must match {GROUP.pattern}")
    return Notification(payload, title, body, group, followed,
                        None if permission is None else check_address(permission), doc)


class Recipients(BaseModel):
    """Whom a notification is for: named users, everyone holding one of `roles`, and (with
    `followers`) everyone following the template's group. At least one of them."""

    users: list[str] = Field(default_factory=list, max_length=10_000)
    roles: list[str] = Field(default_factory=list, max_length=100)
    followers: bool = False

    @model_validator(mode="after")
    def _someone(self) -> Recipients:
        if not (self.users or self.roles or self.followers):
            raise ValueError("a notification is for users, roles or the group's followers")
        if any(not 0 < len(name) <= 200 for name in [*self.users, *self.roles]):
            raise ValueError("user and role names are 1 to 200 characters")
        return self


def to_users(*users: str) -> Recipients:
    return Recipients(users=list(users))


def to_roles(*roles: str) -> Recipients:
    return Recipients(roles=list(roles))


def to_followers() -> Recipients:
    return Recipients(followers=True)
