"""The API noop publishes on the server for other plugins there (Peek's publishedServerApi)."""

import abc


class NoopApi(abc.ABC):
    @abc.abstractmethod
    def echo_count(self) -> int:
        """How many echoes this server instance has answered."""

    @abc.abstractmethod
    def shout(self, text: str) -> str:
        """The text, louder."""
