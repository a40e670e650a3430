"""The bus: a topic exchange reached through a transport (RabbitMQ, or in-process)."""

from __future__ import annotations

from mesh.bus.memory import MemoryBroker, MemoryTransport
from mesh.bus.message import Delivery, Message, QueueSpec
from mesh.bus.rabbitmq import RabbitTransport
from mesh.bus.transport import Transport, TransportClosed, Unroutable
from mesh.config import MeshSettings


def rabbit_transport(settings: MeshSettings, name: str) -> RabbitTransport:
    if not settings.broker_url:
        raise ValueError("MESH_BROKER_URL is not set")
    return RabbitTransport(
        settings.broker_url, settings.exchange, connection_name=name,
        connect_timeout=settings.connect_timeout, cluster=settings.broker_cluster,
    )


__all__ = [
    "Delivery",
    "MemoryBroker",
    "MemoryTransport",
    "Message",
    "QueueSpec",
    "RabbitTransport",
    "Transport",
    "TransportClosed",
    "Unroutable",
    "rabbit_transport",
]
