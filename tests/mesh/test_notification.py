"""Notification templates as contract data: the template syntax inserts a payload's fields by
name and nothing else, refused when the contract is defined; translations that break the rule
are never used; rendering never calls str.format."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from mesh.contract import Contract, notification
from mesh.notification import TemplateError, render, template_fields


class Job(BaseModel):
    name: str
    done: int


FIELDS = ["name", "done"]


@pytest.mark.parametrize("text", [
    "{name.__class__}", "{name[0]}", "{name!r}", "{done:>10}", "{}", "{0}", "{secret}",
    "{name", "name}", "{name.upper}", "{done.__class__.__mro__}", "{ name }", "x" * 2001,
])
def test_anything_but_a_named_field_is_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        template_fields(text, FIELDS)
    with pytest.raises(TemplateError):
        notification(Job, title=text, group="jobs")
    with pytest.raises(TemplateError):
        notification(Job, title="ok", body=text, group="jobs")


def test_named_fields_and_literal_braces_render() -> None:
    assert template_fields("{name} is {done}% {{done}}", FIELDS) == ["name", "done"]
    assert render("{name} is {done}% {{done}}", {"name": "{done}", "done": 5}) == \
        "{done} is 5% {done}"  # a value is inserted as text, never read as a template


def test_declarations_are_checked_and_collected_by_the_contract() -> None:
    with pytest.raises(ValueError, match="group"):
        notification(Job, title="x", group="Bad Group")
    with pytest.raises(ValueError, match="needs a title"):
        notification(Job, title="", group="jobs")
    with pytest.raises(TypeError, match="pydantic model"):
        notification(dict, title="x", group="jobs")  # type: ignore[type-var]
    with pytest.raises(ValueError, match="plugin/group/permission"):
        notification(Job, title="x", group="jobs", permission="not a permission")

    class JobsContract(Contract, plugin="jobs_x"):
        finished = notification(Job, title="{name} finished", group="jobs", followed=False)

    template = JobsContract.notifications["finished"]
    assert (template.qualname, template.group_name(), template.followed) == (
        "jobs_x.finished", "jobs_x.jobs", False)
    catalogs = {"de": {"notifications.finished.title": "{name} fertig"},
                "fr": {"notifications.finished.title": "{name.__class__} fini"}}
    payload = Job(name="backup", done=1).model_dump(mode="json")
    assert template.rendered(payload, catalogs, ["de"]) == ("backup fertig", "")
    assert template.rendered(payload, catalogs, ["fr", "de"])[0] == "backup fertig"  # bad: skipped
    assert template.rendered(payload, catalogs, ["it"])[0] == "backup finished"


def test_a_personal_settings_model_needs_defaults() -> None:
    class Needs(BaseModel):
        size: int

    with pytest.raises(ValueError, match="personal settings model Needs needs a default"):
        class Broken(Contract, plugin="broken_x", personal_settings=Needs):
            pass
