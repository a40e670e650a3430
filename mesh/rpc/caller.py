"""Making RPC calls: many in flight on one connection, matched to replies by correlation id."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from mesh.bus.message import Message
from mesh.bus.transport import ChannelError, Transport, TransportClosed, Unroutable
from mesh.contract import RepT, ReqT, Rpc
from mesh.errors import InvalidReply, NotAllowed, RpcTimeout, Unavailable
from mesh.invoke import Middleware, Outgoing, compose_send
from mesh.names import rpc_key
from mesh.rpc import once, wire
from mesh.rpc.context import acting_for, current_call
from mesh.validation import coerce

ACCESS_REFUSED = 403  # AMQP's reply code for a permission the broker user lacks


class RpcCaller:
    """Calls RPCs as the service `caller`. No lock: calls proceed independently."""

    def __init__(self, transport: Transport, caller: str, *,
                 middleware: Sequence[Middleware] = ()) -> None:
        self.transport = transport
        self.caller = caller
        self._send = compose_send(middleware, self._publish)
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._reply_to: str | None = None

    async def start(self) -> None:
        self._reply_to = await self.transport.listen_for_replies(self._on_reply)
        self.transport.on_connection_lost(self._fail_pending)

    def _on_reply(self, message: Message) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    Unavailable("the connection to the broker was lost; the call may have run")
                )

    async def call(
        self, rpc: Rpc[ReqT, RepT], request: ReqT | dict[str, Any], *,
        timeout: float | None = None, caller: str | None = None, user: str | None = None,
        session: str | None = None, headers: dict[str, Any] | None = None,
    ) -> RepT:
        """Call `rpc`; `caller` names who calls when it is not this service itself (the admin
        API calls on a person's behalf as "cli"); `user` names the signed-in person or device
        the call is made for (a handler sees it in `current_call().user`; calls it makes pass
        it on), and `session` that user's session by its token digest, which the serving side
        checks is live (mesh/serving_acl.py). `headers` travel with the request (an action's id:
        mesh/rpc/once.py)."""
        where = {"rpc": rpc.qualname, "service": rpc.service, "plugin": rpc.plugin}
        request = coerce(rpc.request, request, what=f"the request of {rpc.qualname}", **where)
        budget = rpc.timeout if timeout is None else timeout
        parent = current_call()
        if parent is not None:
            budget = min(budget, parent.remaining())
        if not user:
            user, session = acting_for()
        caller = caller or self.caller
        headers = {**(headers or {}), wire.HEADER_CALLER: caller,
                   wire.HEADER_TIMEOUT_MS: max(1, math.ceil(budget * 1000))}
        if user:
            headers[wire.HEADER_USER] = user
            if session:
                headers[wire.HEADER_SESSION] = session
        outgoing = Outgoing("rpc", rpc, request, caller, headers, time.monotonic() + budget)
        await once.before_calling_out()  # an action's effect commits before it calls out
        return cast(RepT, await self._send(outgoing))

    async def _publish(self, outgoing: Outgoing) -> Any:
        """The end of the chain: publish the request, wait for its reply, decode it."""
        rpc = outgoing.entry
        assert isinstance(rpc, Rpc) and outgoing.deadline is not None
        where = {"rpc": rpc.qualname, "service": rpc.service, "plugin": rpc.plugin}
        budget = outgoing.deadline - time.monotonic()
        if budget <= 0:
            raise RpcTimeout(f"the deadline passed before {rpc.qualname} was called", **where)
        if self._reply_to is None:
            raise Unavailable("the RPC client is not started", **where)

        correlation_id = f"{self._prefix}.{next(self._ids)}"
        millis = max(1, math.ceil(budget * 1000))
        outgoing.headers[wire.HEADER_TIMEOUT_MS] = millis
        message = Message(
            body=outgoing.request.model_dump_json().encode(),
            routing_key=rpc_key(rpc.service, rpc.plugin, rpc.name),
            headers=outgoing.headers,
            correlation_id=correlation_id,
            reply_to=self._reply_to,
            content_type=wire.CONTENT_TYPE,
            expiration_ms=millis,
        )
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(budget):
                await self.transport.publish(message, mandatory=True)
                reply = await future
        except TimeoutError:
            raise RpcTimeout(
                f"no reply to {rpc.qualname} from the {rpc.service} within {budget:.3g}s", **where
            ) from None
        except Unroutable:
            raise Unavailable(f"no {rpc.service} instance serves {rpc.qualname}", **where) from None
        except TransportClosed as exc:
            raise Unavailable(f"cannot reach the broker: {exc}", **where) from None
        except ChannelError as exc:  # this call alone: the connection and its calls stay
            refused = NotAllowed if exc.code == ACCESS_REFUSED else Unavailable
            raise refused(f"the broker refused to publish {rpc.qualname} "
                          f"({message.routing_key}): {exc.text}", **where) from None
        finally:
            self._pending.pop(correlation_id, None)

        return wire.decode_outcome(
            rpc.reply, wire.status(reply), reply.body, what="reply",
            failed=lambda _: wire.decode_error(reply, rpc.error_class),
            invalid=lambda message, details: InvalidReply(message, details=details, **where))
