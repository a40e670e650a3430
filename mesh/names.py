"""Every routing key and queue name the mesh uses, in one place (docs/protocol.md mirrors it)."""

from __future__ import annotations


def rpc_key(service: str, plugin: str, name: str) -> str:
    return f"rpc.{service}.{plugin}.{name}"


def rpc_pattern(service: str, plugin: str) -> str:
    return f"rpc.{service}.{plugin}.*"


def rpc_queue(exchange: str, service: str, plugin: str) -> str:
    return f"{exchange}.rpc.{service}.{plugin}"


def heartbeat_key(service: str, instance: str) -> str:
    return f"heartbeat.{service}.{instance}"


def parse_rpc_key(routing_key: str) -> tuple[str, str, str] | None:
    parts = routing_key.split(".")
    if len(parts) != 4 or parts[0] != "rpc":
        return None
    return parts[1], parts[2], parts[3]
