"""A throwaway OTLP/HTTP receiver for the traced side of `python -m bench rpc`.

`python -m bench.otlp_sink` listens on a free port of 127.0.0.1, prints it, and answers every
POST with 200 and an empty ExportTraceServiceResponse (an empty protobuf message is zero
bytes), after reading the body and throwing it away; a GET says how many exports came. In a
process of its own, so that taking the spans costs neither the caller nor the server anything
but the export itself: the exporters still build and send every batch, as they would to a
real collector.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection
    received = [0, 0]  # exports, bytes: GET answers them, so the bench knows spans came

    def do_POST(self) -> None:
        size = len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.received[0] += 1
        self.received[1] += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps({"exports": self.received[0], "bytes": self.received[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    print(server.server_address[1], flush=True)  # the bench reads the port from here
    server.serve_forever()


if __name__ == "__main__":
    main()
