"""Finding the four service programs the way plugins are found: every entry point in the
`mesh.services` group names a service kind and its `Service` subclass (mesh's own
pyproject.toml registers `services.server:ServerService` and the other three).

So the library never imports `services/`: the programs depend on the library, not the other
way round, and only the entry points that run programs (`mesh up`, `mesh run`, the testing
kit) ask for one, by kind.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from mesh.service import Service

ENTRY_POINT_GROUP = "mesh.services"


class ProgramMissing(LookupError):
    """No installed distribution provides the program of a service kind (or several do)."""


@functools.cache
def service_class(kind: str) -> type[Service]:
    """The `Service` subclass installed for `kind` (server, client, agent or worker); looked
    up once per process (the testing kit makes many services)."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=kind)
    if not found:
        raise ProgramMissing(
            f"no program for the {kind} service is installed (no {kind!r} entry point in "
            f"the {ENTRY_POINT_GROUP!r} group): reinstall mesh")
    if len(found) > 1:
        owners = ", ".join(sorted(ep.dist.name if ep.dist else ep.value for ep in found))
        raise ProgramMissing(f"several programs claim the {kind} service: {owners}")
    [entry] = found
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Service)) or cls.kind != kind:
        raise ProgramMissing(
            f"the {ENTRY_POINT_GROUP} entry point {kind} = {entry.value} is not the "
            f"{kind} service's Service subclass")
    return cls
