"""The baseline's echo server: plain aio-pika, written the way its documentation shows.

`python -m bench.baseline_server URL QUEUE` consumes QUEUE and answers each JSON request
{"text": ...} with {"text": ..., "served_by": ...} (mesh's noop.echo reply) on the request's
reply_to, through the default exchange. It does the same AMQP work as a mesh server: prefetch
64, one ack per request, and no publisher confirms on replies, which nobody waits for. It runs
on the event loop the mesh server runs on (MESH_EVENT_LOOP, uvloop by default), so the loop is
not what the two sides differ in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from mesh import loop
from mesh.config import MeshSettings

PREFETCH = 64  # mesh's default rpc_concurrency


async def serve(url: str, queue_name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    served_by = f"baseline-{os.getpid()}"
    connection = await aio_pika.connect(url, client_properties={"connection_name": served_by})
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(queue_name, auto_delete=True)

        async def on_request(message: AbstractIncomingMessage) -> None:
            async with message.process(requeue=False):
                request = json.loads(message.body)
                reply = {"text": request["text"], "served_by": served_by}
                if message.reply_to:
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            json.dumps(reply).encode(),
                            content_type="application/json",
                            correlation_id=message.correlation_id,
                        ),
                        routing_key=message.reply_to,
                    )

        await queue.consume(on_request)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("queue")
    args = parser.parse_args()
    loop.run(serve(args.url, args.queue), MeshSettings().event_loop)


if __name__ == "__main__":
    main()
