"""Every routing key and queue name the mesh uses, in one place (docs/protocol.md mirrors it)."""

from __future__ import annotations

from typing import Literal, get_args

ServiceKind = Literal["server", "client", "agent", "worker"]
# The four services, in the order they start and are listed; they name the routing keys.
SERVICE_KINDS: tuple[ServiceKind, ...] = get_args(ServiceKind)


def rpc_key(service: str, plugin: str, name: str) -> str:
    return f"rpc.{service}.{plugin}.{name}"


def rpc_pattern(service: str, plugin: str) -> str:
    return f"rpc.{service}.{plugin}.*"


def rpc_queue(exchange: str, service: str, plugin: str) -> str:
    return f"{exchange}.rpc.{service}.{plugin}"


def heartbeat_key(service: str, instance: str) -> str:
    return f"heartbeat.{service}.{instance}"


HEARTBEAT_PATTERN = "heartbeat.#"


def heartbeat_queue(exchange: str, instance: str) -> str:
    """A server instance's own queue of every service's heartbeats."""
    return f"{exchange}.heartbeats.{instance}"


def parse_rpc_key(routing_key: str) -> tuple[str, str, str] | None:
    parts = routing_key.split(".")
    if len(parts) != 4 or parts[0] != "rpc":
        return None
    return parts[1], parts[2], parts[3]


def observable_key(plugin: str, topic: str, selector_key: str) -> str:
    """Where a topic's payloads for one selector are published."""
    return f"obs.{plugin}.{topic}.{selector_key}"


def watch_key(plugin: str, topic: str) -> str:
    """Where client services announce the selectors they watch."""
    return f"obsctl.watch.{plugin}.{topic}"


WATCH_PATTERN = "obsctl.watch.#"
HELLO_KEY = "obsctl.hello"  # a server asking the client services to announce again


def observer_queue(exchange: str, instance: str) -> str:
    """A client instance's own queue of topic updates."""
    return f"{exchange}.obs.{instance}"


def watch_queue(exchange: str, instance: str) -> str:
    """A server instance's own queue of watch announcements."""
    return f"{exchange}.obsctl.{instance}"


# -- control: plugins switched, settings changed, plugins installed, identities invalidated ------

CONTROL_PATTERN = "control.#"
STATE_KEY = "control.state"  # the whole platform state, which a server publishes when it starts
INVALIDATE_KEY = "control.identity.invalidate"  # a token revoked, permissions changed
HOOKS_KEY = "control.hooks"  # the administrator's hook grants changed (all of them)


MISSED_BEATS = 3  # an instance silent for this many heartbeat intervals is gone


def switch_key(plugin: str) -> str:
    return f"control.plugin.{plugin}"


NOTIFICATION_KEY = "control.notification"  # a notification stored: client services deliver it


def personal_key(plugin: str) -> str:
    """A user's personal settings of `plugin` changed: their devices get the new values."""
    return f"control.personal.{plugin}"


def settings_key(plugin: str) -> str:
    return f"control.settings.{plugin}"


def installed_key(plugin: str) -> str:
    return f"control.installed.{plugin}"


def removed_key(plugin: str) -> str:
    return f"control.removed.{plugin}"


def log_level_key(plugin: str) -> str:
    return f"control.loglevel.{plugin}"


def control_queue(exchange: str, instance: str) -> str:
    """A service instance's own queue of control messages."""
    return f"{exchange}.control.{instance}"


# -- tasks: docs/protocol.md §14 -----------------------------------------------------------------
# Only task queues live under "<exchange>.task."; the shared queues use "task-..." words, which no
# plugin or task name can have (names have no '-'), so the two can never collide.

TASK_DEAD_PATTERN = "task-dead.#"


def task_key(plugin: str, name: str) -> str:
    return f"task.{plugin}.{name}"


def task_queue(exchange: str, plugin: str, name: str) -> str:
    return f"{exchange}.{task_queue_suffix(plugin, name)}"


def task_queue_suffix(plugin: str, name: str) -> str:
    """A task queue's name without the exchange's prefix (what the catalog shows)."""
    return f"task.{plugin}.{name}"


def task_dead_key(plugin: str, name: str) -> str:
    return f"task-dead.{plugin}.{name}"


def task_dead_queue(exchange: str) -> str:
    return f"{exchange}.task-dead"


def task_delay_exchange(exchange: str) -> str:
    return f"{exchange}.task-delay"


def task_delay_queue(exchange: str, delay_ms: int) -> str:
    return f"{exchange}.task-delay.{delay_ms}"


def task_results_queue(exchange: str, instance: str) -> str:
    return f"{exchange}.task-results.{instance}"


# The task ledger: each worker reports its tasks' state changes on its own key, and the servers
# keep them (docs/tasks.md, "Handles from an id").
TASK_STATE_PATTERN = "task-state.#"


def task_state_key(instance: str) -> str:
    """Where a worker instance publishes its batches of task state reports."""
    return f"task-state.{instance}"


def task_state_queue(exchange: str) -> str:
    """The servers' shared queue of task state reports (each batch is stored once)."""
    return f"{exchange}.task-state"


def parse_task_key(routing_key: str) -> tuple[str, str] | None:
    parts = routing_key.split(".")
    if len(parts) != 3 or parts[0] not in ("task", "task-dead"):
        return None
    return parts[1], parts[2]
