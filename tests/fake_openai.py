"""A small OpenAI-compatible HTTP server on 127.0.0.1 that answers as a test scripts it.

It speaks real HTTP/1.1 over a real socket; each request's answer comes from
``respond(body, n)`` (``n`` counts requests from 0), so a test can make it
misbehave on purpose: an error status with ``Retry-After``, a hang, a
malformed body, a connection closed mid-response::

    with FakeOpenAI(lambda body, n: Answer.completion('{"ok": true}')) as server:
        backend = OpenAIBackend(server.url, "fake")
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """What the server does with one request."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # send the headers and half the body, then close the connection

    @classmethod
    def completion(cls, content: str, *, delay: float = 0.0, finish_reason: str = "stop") -> Answer:
        data = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
        return cls(body=json.dumps(data).encode(), delay=delay)

    @classmethod
    def error(cls, status: int, message: str, headers: Mapping[str, str] | None = None) -> Answer:
        return cls(status, json.dumps({"error": {"message": message}}).encode(), headers or {})


Respond = Callable[[dict[str, Any], int], Answer]


class FakeOpenAI:
    """Serve ``/v1/chat/completions`` on a free loopback port while in a ``with`` block."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm and
                # the client's delayed ACK hold the body back for 40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    n = len(server.bodies)
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    answer = server.respond(body, n)
                    time.sleep(answer.delay)
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if answer.drop:
                        self.wfile.write(answer.body[: len(answer.body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler
