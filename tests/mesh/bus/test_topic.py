"""Topic matching, against RabbitMQ's documented topic-exchange rules and against RabbitMQ itself.

Words are separated by '.'; '*' stands for exactly one word and '#' for zero or more. Words may
be empty ("a..b" has three words, "a." two), and the empty routing key has no words at all.
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from mesh.bus.topic import topic_matches

# (pattern, routing key, matches)
CASES: list[tuple[str, str, bool]] = [
    # literal words
    ("a", "a", True),
    ("a", "b", False),
    ("a.b", "a.b", True),
    ("a.b", "a", False),
    ("a", "a.b", False),
    ("a.b", "a.b.c", False),
    ("a.b", "b.a", False),
    ("", "", True),
    ("", "a", False),
    ("a", "", False),
    # '*' is exactly one word
    ("*", "a", True),
    ("*", "", False),
    ("*", "a.b", False),
    ("*.b", "a.b", True),
    ("*.b", "b", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    # '#' alone matches everything, the empty key included
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    # '#' is zero or more words, anywhere in the pattern
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("a.#", "", False),
    ("#.b", "b", True),
    ("#.b", "a.b", True),
    ("#.b", "x.y.b", True),
    ("#.b", "b.a", False),
    ("#.b", "", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.c", False),
    ("a.#.b", "a", False),
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y", True),
    ("#.a.#", "x.y", False),
    ("a.b.#", "a.b", True),
    ("a.b.#", "a.c", False),
    # '*' and '#' together
    ("*.#", "a", True),
    ("*.#", "a.b.c", True),
    ("*.#", "", False),
    ("#.*", "a", True),
    ("#.*", "", False),
    ("#.*.#", "a", True),
    ("#.*.#", "", False),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c", True),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("#.#.b", "b", True),
    ("a.#.#", "a", True),
    ("#.b.#", "a.b.b", True),
    # empty words: "a..b" has three words, "a." and ".a" two, "." two empty ones
    ("a..b", "a..b", True),
    ("a.*.b", "a..b", True),
    ("a.b", "a..b", False),
    ("a.#.b", "a..b", True),
    ("a.", "a.", True),
    ("a.", "a", False),
    ("a", "a.", False),
    ("a.*", "a.", True),
    ("a.#", "a.", True),
    ("*", ".", False),
    ("*.*", ".", True),
    (".", ".", True),
    (".a", ".a", True),
    ("*.a", ".a", True),
    ("#.a", ".a", True),
    # '*' and '#' only count as whole words; inside a word they are literal
    ("a#", "a#", True),
    ("a#", "ab", False),
    ("*a", "*a", True),
    ("*a", "ba", False),
    ("a", "*", False),
    ("a", "#", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_topic_matches_rabbitmq_rules(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_many_hashes_stay_fast() -> None:
    pattern = ".".join(["#"] * 40 + ["z"])
    key = ".".join(["a"] * 200)
    assert not topic_matches(pattern, key)
    assert topic_matches(pattern, key + ".z")


@pytest.mark.rabbitmq
async def test_topic_matches_agrees_with_rabbitmq(mesh_broker_url: str) -> None:
    """Bind a queue per pattern, publish every key, compare what arrived with topic_matches."""
    patterns = list(dict.fromkeys(p for p, _, _ in CASES))
    keys = list(dict.fromkeys(k for _, k, _ in CASES))
    connection = await aio_pika.connect(mesh_broker_url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            f"mesh-test-topic-{uuid.uuid4().hex[:10]}", aio_pika.ExchangeType.TOPIC,
            auto_delete=True,
        )
        queues = {}
        for pattern in patterns:
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key=pattern)
            queues[pattern] = queue
        for key in keys:  # confirmed, so each is in its queues once publish returns
            await exchange.publish(aio_pika.Message(key.encode()), routing_key=key)

        routed: dict[str, set[str]] = {}
        for pattern, queue in queues.items():
            routed[pattern] = set()
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                routed[pattern].add(message.body.decode())

        disagreements = [
            (pattern, key, key in routed[pattern])
            for pattern in patterns
            for key in keys
            if topic_matches(pattern, key) != (key in routed[pattern])
        ]
        assert disagreements == [], "(pattern, key, what RabbitMQ did)"
        # and the table itself states what RabbitMQ does
        assert [(p, k) for p, k, expected in CASES if (k in routed[p]) != expected] == []
        await exchange.delete()
    finally:
        await asyncio.wait_for(connection.close(), 5)

