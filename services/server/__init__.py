"""The server: the mesh's centre, where plugins keep their state and logic.

Later it runs migrations and the admin API.
"""

from __future__ import annotations

from mesh.service import Service


class ServerService(Service):
    kind = "server"
