"""The four programs of the mesh. Each is `mesh run <kind>`; they differ in what they host."""

from __future__ import annotations

from mesh.service import Service
from services.agent import AgentService
from services.client import ClientService
from services.server import ServerService
from services.worker import WorkerService

SERVICES: dict[str, type[Service]] = {
    "server": ServerService,
    "client": ClientService,
    "agent": AgentService,
    "worker": WorkerService,
}
