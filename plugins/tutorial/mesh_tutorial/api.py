"""The API the tutorial offers other plugins on the server (Peek's TutorialApiABC).

Other plugins import this module, never the server part: `self.ctx.api("tutorial", TutorialApi)`
gives them the tutorial's implementation, checked against this class.
"""

import abc

from mesh_tutorial.contract import StringInt


class TutorialApi(abc.ABC):
    @abc.abstractmethod
    async def string_ints(self, prefix: str | None = None) -> list[StringInt]:
        """Every row whose string1 starts with `prefix` (every row if None), ordered by id;
        unlike the list RPC, never cut short by the max_rows setting."""
