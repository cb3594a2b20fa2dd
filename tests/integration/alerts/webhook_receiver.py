"""Real local webhook receivers for the alert tests: a scripted HTTP server, a server that
trickles its answer a byte at a time, and a port that refuses connections. All listen on
127.0.0.1 only; the conftest beside this file turns them into fixtures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "s3cr3t-T0KEN-xyz"


@dataclass(frozen=True)
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() when the request arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.script: dict[str, list[Reply]] = {}  # path → replies in turn; the last repeats
        self.release = threading.Event()

    def next_reply(self, path: str) -> Reply:
        replies = self.script.get(path) or [Reply()]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the slow case) is expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        at = time.monotonic()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.append(Received(self.path, dict(self.headers), body, at))
            reply = self.server.next_reply(self.path)
        if reply.delay:
            self.server.release.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # only a followed redirect would ever GET
        with self.server.lock:
            self.server.received.append(Received(self.path, dict(self.headers), {}, 0.0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@dataclass
class Hook:
    server: _Server

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def reply(self, path: str, *replies: Reply) -> str:
        self.server.script[path] = list(replies)
        return self.url(path)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [r.body for r in self.server.received if r.path == path]

    def times(self, path: str) -> list[float]:
        return [r.at for r in self.server.received if r.path == path]


@contextmanager
def receiver() -> Iterator[Hook]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Hook(server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@contextmanager
def trickling(interval: float) -> Iterator[str]:
    """Accepts, reads the request, then answers one byte every ``interval`` seconds (a 200
    whose headers alone take 40 bytes) until stopped."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 200:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(interval)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook/{TOKEN}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def refused_url() -> str:
    with socket.socket() as sock:  # bound, never listening, then closed: connections refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/webhooks/1/{TOKEN}"
