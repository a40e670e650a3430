"""Broker-level boundaries: one RabbitMQ user per service kind, with vhost and topic
permissions derived from the contracts, so that a service (an agent in a DMZ, say) can publish
only the routing keys its contracts let it send, bind only what it consumes, and read only its
own queues. Applied with `rabbitmqctl` (`mesh broker acl --apply`); docs/identity.md says what
it guarantees and what it does not.

Every routing key and queue name comes from `mesh.names`, so this stays in step with what the
services really do (the test runs the whole mesh under these users).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.identity import IdentityContract
from contracts.notifications import NotificationsContract, WebhookContract
from contracts.platform import PlatformContract
from mesh import names
from mesh.catalog import Catalog
from mesh.contract import Contract
from mesh.names import SERVICE_KINDS

PLATFORM_CONTRACTS: tuple[type[Contract], ...] = (
    PlatformContract, IdentityContract, NotificationsContract, WebhookContract)
CLI = "cli"  # `mesh call`, `mesh tasks` and scripts (mesh.connect): a broker user of their own
HEX = "[0-9a-f]+"  # no {n} quantifiers: RabbitMQ expands {…} in topic permissions


def instance_word(kind: str) -> str:
    """Instance ids of a kind start with it (the default `<kind>-<host>-<pid>-<hex>`)."""
    return f"{kind}-[A-Za-z0-9_-]+"


@dataclass(frozen=True)
class Call:
    service: str
    plugin: str
    name: str
    callers: frozenset[str] | None

    @property
    def key(self) -> str:
        return names.rpc_key(self.service, self.plugin, self.name)


@dataclass
class KindAcl:
    """What one service kind's broker user may do, as RabbitMQ regular expressions."""

    kind: str
    user: str
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str
    publishes: list[str] = field(default_factory=list)  # for people: keys and patterns

    def rabbitmqctl(self, vhost: str, exchange: str) -> list[list[str]]:
        """The commands that set this user's permissions (the user must exist)."""
        return [["set_permissions", "-p", vhost, self.user, self.configure, self.write,
                 self.read],
                ["set_topic_permissions", "-p", vhost, self.user, exchange, self.topic_write,
                 self.topic_read]]


def _any(patterns: Iterable[str]) -> str:
    unique = list(dict.fromkeys(patterns))
    return f"^({'|'.join(unique)})$" if unique else "^$"


def _calls(catalog: Catalog) -> list[Call]:
    found = [Call(e.service, e.plugin, e.name,
                  None if e.callers is None else frozenset(e.callers))
             for e in catalog.entries if e.kind in ("rpc", "action", "topic")]
    for contract in PLATFORM_CONTRACTS:
        found += [Call(r.service, r.plugin, r.name, r.callers) for r in contract.rpcs.values()]
    return found


WORD = "[a-z][a-z0-9_]*"  # a plugin's or an entry's name (mesh.contract.NAME_PATTERN)
KIND_WORDS = "(server|client|agent|worker)"


def _platform_plugins() -> list[str]:
    return sorted({r.plugin for c in PLATFORM_CONTRACTS for r in c.rpcs.values()})


def _rpc_sends(kind: str, calls: list[Call]) -> list[str]:
    """The RPC keys `kind` may publish: the platform's own, one by one, as their `callers`
    say; any plugin's, except the entries of plugins installed now whose `callers` leave
    `kind` out. So a plugin installed, upgraded or removed later needs no change here (the
    serving side checks `callers` against the broker-stamped kind); an upgrade that opens an
    entry to more kinds is refused by the broker until the ACL is applied again (fail
    closed)."""
    platform = set(_platform_plugins())
    sends = [re.escape(c.key) for c in calls
             if c.plugin in platform and (c.callers is None or kind in c.callers)]
    denied = [re.escape(c.key) for c in calls
              if c.plugin not in platform and c.callers is not None and kind not in c.callers]
    not_platform = "|".join(re.escape(p) for p in sorted(platform))
    guard = f"(?!rpc\\.{KIND_WORDS}\\.({not_platform})\\.)"
    if denied:
        guard += f"(?!({'|'.join(denied)})$)"
    sends.append(f"{guard}rpc\\.{KIND_WORDS}\\.{WORD}\\.{WORD}")
    return sends


def broker_acl(catalog: Catalog, *, exchange: str, prefix: str = "mesh") -> list[KindAcl]:
    """One KindAcl per service kind, for the plugins in `catalog` on `exchange`.

    Queues, bindings, tasks and topics are allowed by their shape, for any plugin, so that
    installing, upgrading or uninstalling a plugin needs no change; RPC keys are allowed as
    `_rpc_sends` says."""
    e = re.escape(exchange)
    calls = _calls(catalog)
    task = f"{WORD}\\.{WORD}"
    task_queues = [f"{e}\\.task\\.{task}", f"{e}\\.task-dead"]
    task_bindings = [f"task\\.{task}", "task-dead\\.\\#"]
    topic = f"{WORD}\\.{WORD}"
    acls = []
    for kind in (*SERVICE_KINDS, CLI):
        me = instance_word(kind)
        queues = [f"{e}\\.rpc\\.{kind}\\.{WORD}"] if kind != CLI else []
        queues += [f"{e}\\.task-results\\.{me}", *task_queues]
        bindings = [f"rpc\\.{kind}\\.{WORD}\\.\\*"] if kind != CLI else []
        bindings += task_bindings
        sends = _rpc_sends(kind, calls)
        sends += [f"task\\.{task}"]
        if kind != CLI:  # a service: control messages, heartbeats
            queues.append(f"{e}\\.control\\.{me}")
            bindings.append("control\\.\\#")
            sends.append(f"heartbeat\\.{kind}\\.{me}")
        exchanges = [e]
        if kind == "server":
            queues += [f"{e}\\.heartbeats\\.{me}", f"{e}\\.obsctl\\.{me}", f"{e}\\.task-state"]
            bindings += ["heartbeat\\.\\#", "obsctl\\.watch\\.\\#", "task-state\\.\\#"]
            sends += ["control\\.[a-z0-9_.-]+", "obsctl\\.hello"]
            # the admin API's invokes are "cli" calls made by the server for a signed-in person
            sends += [s for s in _rpc_sends(CLI, calls) if s not in sends]
            sends += [f"obs\\.{topic}\\.{HEX}"]
        if kind == "client":
            queues += [f"{e}\\.obs\\.{me}"]
            bindings += ["obsctl\\.hello", f"obs\\.{topic}\\.{HEX}"]
            sends += [f"obsctl\\.watch\\.{topic}"]
        if kind == "worker":
            queues += [f"{e}\\.task-delay\\.[0-9]+"]
            exchanges += [f"{e}\\.task-delay"]
            sends += [f"task-dead\\.{task}"]
            sends += [f"task-state\\.{me}"]  # the task ledger's reports: workers only
        configure = [*queues, *exchanges[1:]]
        if kind == "server":
            configure.append(e)  # the server creates the exchange; the others find it
        acls.append(KindAcl(
            kind=kind, user=f"{prefix}-{kind}",
            configure=_any(configure),
            write=_any([*exchanges, "amq\\.default", *queues]),
            read=_any([*exchanges, "amq\\.rabbitmq\\.reply-to", *queues]),
            topic_write=_any(sends), topic_read=_any(bindings),
            publishes=sorted([s.replace("\\", "") for s in sends if not s.startswith("(?!")]
                             + [f"rpc.<service>.<plugin>.<name> of any plugin but those "
                                f"whose callers leave {kind} out"]),
        ))
    return acls
