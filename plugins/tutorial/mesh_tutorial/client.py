"""The tutorial on the client, next to the devices: work for them that needs no server."""

from mesh import PluginPart, handles, remaining_time
from mesh.errors import TaskError
from mesh_tutorial.contract import StringInt, StringIntId, TaskFailed, TutorialContract


class TutorialClient(PluginPart):
    """The tutorial's part on the client."""

    @handles(TutorialContract.double_string_int)
    async def double_string_int(self, request: StringIntId) -> StringInt:
        """Queues the task straight for a worker, and waits for its result."""
        handle = await self.ctx.stub(TutorialContract).double_int.enqueue(request)
        try:
            return await handle.result(timeout=remaining_time())
        except TaskError as exc:
            raise TaskFailed(f"double_int failed after {exc.attempts} attempts: "
                             f"{exc.message}") from None
