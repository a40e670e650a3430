"""Step 2: a part on every service, each run by its service."""

from __future__ import annotations

from mesh.testing import RunningMesh


async def test_every_service_runs_its_part(mesh: RunningMesh) -> None:
    for kind in ("server", "client", "agent", "worker"):
        assert mesh.state("tutorial", kind) == "started", kind
        assert type(mesh.part("tutorial", kind)).__name__ == f"Tutorial{kind.capitalize()}"
