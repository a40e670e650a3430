"""The worker: runs plugins' background work.

Later it consumes durable task queues.
"""

from __future__ import annotations

from mesh.service import Service


class WorkerService(Service):
    kind = "worker"
    uses_database = True
