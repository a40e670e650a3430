"""One device connection's subscriptions, by the id the device gave each: the topic it watches
(its permission is checked again whenever who the device is changes) and how to end it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mesh.contract import Topic
from mesh.identity import Identity
from services.client.gateway.frames import DeviceError, RequestId

Unsubscribe = Callable[[], None]


def _nothing() -> None:
    """The end of a subscription still being made: there is nothing upstream to end yet."""


class Subscriptions:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ends: dict[RequestId, Unsubscribe] = {}
        self._topics: dict[RequestId, Topic[Any, Any]] = {}

    def __len__(self) -> int:
        return len(self._ends)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._ends

    def reserve(self, sub_id: RequestId, topic: Topic[Any, Any]) -> None:
        """Hold `sub_id` for `topic` while the subscription is made upstream."""
        if sub_id in self._ends:
            raise DeviceError("bad_frame", f"subscription {sub_id!r} exists already")
        if len(self._ends) >= self.limit:
            raise DeviceError("too_many_subscriptions", f"at most {self.limit} per connection")
        self._ends[sub_id] = _nothing
        self._topics[sub_id] = topic

    def settle(self, sub_id: RequestId, unsubscribe: Unsubscribe) -> bool:
        """The subscription is made upstream; False if it was ended meanwhile (the caller
        unsubscribes then)."""
        if sub_id not in self._ends:
            return False
        self._ends[sub_id] = unsubscribe
        return True

    def forget(self, sub_id: RequestId) -> Unsubscribe | None:
        """Take `sub_id` out, returning how to end it upstream (None if there is no such)."""
        self._topics.pop(sub_id, None)
        return self._ends.pop(sub_id, None)

    def end_forbidden(self, identity: Identity) -> list[tuple[RequestId, Topic[Any, Any]]]:
        """End the subscriptions `identity` may no longer keep; returns them."""
        return self._end_where(lambda topic: not identity.may(topic.permission))

    def end_gone(self, known: Mapping[str, Topic[Any, Any]]
                 ) -> list[tuple[RequestId, Topic[Any, Any]]]:
        """End the subscriptions to topics no longer in `known` (their plugin was switched
        off or removed); returns them."""
        return self._end_where(lambda topic: topic.qualname not in known)

    def _end_where(self, ends: Callable[[Topic[Any, Any]], bool]
                   ) -> list[tuple[RequestId, Topic[Any, Any]]]:
        ended = []
        for sub_id, topic in list(self._topics.items()):
            if not ends(topic):
                continue
            unsubscribe = self.forget(sub_id)
            if unsubscribe is not None:
                unsubscribe()
            ended.append((sub_id, topic))
        return ended

    def end_all(self) -> None:
        for unsubscribe in self._ends.values():
            unsubscribe()
        self._ends.clear()
        self._topics.clear()
