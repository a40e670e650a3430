"""RabbitMQ topic matching: words split on '.', '*' matches one word, '#' zero or more.

As in RabbitMQ, the empty string has no words at all (so only '#', '#.#', ... and the empty
pattern match the empty key), while "a." has two words, "a" and "".
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def _split(key: str) -> tuple[str, ...]:
    return tuple(key.split(".")) if key else ()


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a binding `pattern` matches `routing_key` on a RabbitMQ topic exchange."""
    return _match(_split(pattern), _split(routing_key))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    # Dynamic programming over (pattern position, word position): linear in both, so patterns
    # with many '#' cannot blow up.
    reachable = {0}  # word positions reachable after consuming pattern[:p]
    for token in pattern:
        if token == "#":
            start = min(reachable)
            reachable = set(range(start, len(words) + 1))
        else:
            reachable = {
                w + 1 for w in reachable if w < len(words) and token in ("*", words[w])
            }
        if not reachable:
            return False
    return len(words) in reachable
