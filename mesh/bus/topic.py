"""RabbitMQ topic matching: words split on '.', '*' matches one word, '#' zero or more."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def _split(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def topic_matches(pattern: str, routing_key: str) -> bool:
    return _match(_split(pattern), 0, _split(routing_key), 0)


def _match(pattern: tuple[str, ...], p: int, words: tuple[str, ...], w: int) -> bool:
    while p < len(pattern):
        token = pattern[p]
        if token == "#":
            if p == len(pattern) - 1:
                return True
            return any(_match(pattern, p + 1, words, i) for i in range(w, len(words) + 1))
        if w >= len(words):
            return False
        if token != "*" and token != words[w]:
            return False
        p += 1
        w += 1
    return w == len(words)
