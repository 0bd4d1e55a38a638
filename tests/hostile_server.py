"""A tiny HTTP server on 127.0.0.1 that answers whatever a test scripts, as slowly as it likes.

Each route maps to a list of answers served in turn (the last one repeats); an answer is either raw bytes
(a whole HTTP response, possibly malformed) or a `(status, JSON-able body)` pair. `byte_delay_s` makes
the server trickle its answer one byte at a time.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Answer = bytes | tuple[int, Any]


def http_response(status: int, body: Any) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


class HostileServer:
    def __init__(self, routes: dict[str, list[Answer]], byte_delay_s: float = 0.0):
        self.routes = routes
        self.byte_delay_s = byte_delay_s
        self.requests: list[tuple[str, bytes]] = []

    def answer(self, path: str) -> bytes:
        answers = self.routes[path]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer if isinstance(answer, bytes) else http_response(*answer)


@contextmanager
def serve(server_script: HostileServer) -> Iterator[str]:
    """Run the server; yields its base URL (with /v1)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            reader = self.request.makefile("rb")
            while True:  # keep-alive: one request after another on the connection
                request_line = reader.readline()
                if not request_line:
                    return
                headers = {}
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                path = request_line.split()[1].decode().removeprefix("/v1")
                server_script.requests.append((path, body))
                data = server_script.answer(path)
                try:
                    if server_script.byte_delay_s:
                        for byte in data:
                            self.request.sendall(bytes([byte]))
                            time.sleep(server_script.byte_delay_s)
                    elif data:
                        self.request.sendall(data)
                    else:  # an empty answer: drop the connection
                        self.request.shutdown(socket.SHUT_RDWR)
                        return
                except OSError:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
