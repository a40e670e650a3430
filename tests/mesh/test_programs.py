"""The four service programs are found by entry points; a missing, doubled or wrong one is a
clear error, not a KeyError or an AttributeError deep in start-up."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint, EntryPoints

import pytest

from mesh import programs
from mesh.names import SERVICE_KINDS
from mesh.programs import ENTRY_POINT_GROUP, ProgramMissing, service_class
from services.server import ServerService


@pytest.fixture(autouse=True)
def fresh_lookup() -> Iterator[None]:
    service_class.cache_clear()
    yield
    service_class.cache_clear()


def installed(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> None:
    found = EntryPoints(EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in entries)
    monkeypatch.setattr(programs, "entry_points",
                        lambda group, name: found.select(group=group, name=name))


def test_each_kind_has_its_program_installed() -> None:
    for kind in SERVICE_KINDS:
        assert service_class(kind).kind == kind
    assert service_class("server") is ServerService


def test_a_missing_program_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch)
    with pytest.raises(ProgramMissing, match="no program for the server service is installed"):
        service_class("server")


def test_two_programs_for_one_kind_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, ("server", "services.server:ServerService"),
              ("server", "services.agent:AgentService"))
    with pytest.raises(ProgramMissing, match="several programs claim the server service"):
        service_class("server")


@pytest.mark.parametrize("value", ["services.agent:AgentService", "mesh.config:MeshSettings"])
def test_an_entry_point_to_another_class_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str,
) -> None:
    installed(monkeypatch, ("server", value))
    with pytest.raises(ProgramMissing, match=f"server = {value} is not the server service"):
        service_class("server")
