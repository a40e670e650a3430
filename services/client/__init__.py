"""The client: the gateway devices connect to.

Later it caches observable topics and forwards actions.
"""

from __future__ import annotations

from mesh.service import Service


class ClientService(Service):
    kind = "client"
