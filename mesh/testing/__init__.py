"""mesh's testing kit: a running mesh for each test, on the in-process bus or RabbitMQ, with
the plugin under test loaded, typed stubs, and a database on SQLite or PostgreSQL.

It is a pytest plugin that comes with mesh (the `pytest11` entry point), so its fixtures and
options are there wherever mesh is installed: see docs/plugin-guide.md. Names are imported on
first use, so that loading the plugin keeps pytest's start quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mesh.testing.backends import fresh_postgres_database
    from mesh.testing.bus import Bus, eventually
    from mesh.testing.devices import Device, DeviceRefused, SignIn
    from mesh.testing.harness import MeshSetupError, RunningMesh, select_plugins
    from mesh.testing.migrations import assert_migrations_sound

_HOMES = {
    "Bus": "mesh.testing.bus",
    "eventually": "mesh.testing.bus",
    "Device": "mesh.testing.devices",
    "DeviceRefused": "mesh.testing.devices",
    "SignIn": "mesh.testing.devices",
    "fresh_postgres_database": "mesh.testing.backends",
    "MeshSetupError": "mesh.testing.harness",
    "RunningMesh": "mesh.testing.harness",
    "select_plugins": "mesh.testing.harness",
    "assert_migrations_sound": "mesh.testing.migrations",
}

__all__ = [
    "Bus",
    "Device",
    "DeviceRefused",
    "MeshSetupError",
    "RunningMesh",
    "SignIn",
    "assert_migrations_sound",
    "eventually",
    "fresh_postgres_database",
    "select_plugins",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mesh.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
