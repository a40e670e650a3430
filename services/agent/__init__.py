"""The agent: the edge that talks to outside systems, possibly from a DMZ.

It reaches the rest of the mesh only through the bus.
"""

from __future__ import annotations

from mesh.service import Service


class AgentService(Service):
    kind = "agent"
