"""An HTTP proxy on loopback that injects S3 faults in front of the moto server.

Faults are planned by the count of requests that `matches` selects (shard uploads, say):
connection resets, 503 SlowDown answers, and an outage (every request reset) lasting a
number of seconds from a chosen request on. Everything else is forwarded unchanged.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class FaultPlan:
    matches: Callable[[str, str], bool]
    resets: set[int] = field(default_factory=set)  # numbers of matching requests (1-based)
    slowdowns: set[int] = field(default_factory=set)
    outage_at: int | None = None
    outage_seconds: float = 10.0
    seen: int = 0
    injected: dict[str, int] = field(default_factory=lambda: {"reset": 0, "slowdown": 0})
    outage_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, method: str, path: str) -> str | None:
        with self.lock:
            if time.monotonic() < self.outage_until:
                self.injected["reset"] += 1
                return "reset"
            if not self.matches(method, path):
                return None
            self.seen += 1
            if self.seen == self.outage_at:
                self.outage_until = time.monotonic() + self.outage_seconds
                self.injected["outage"] = 1
                return "reset"
            for kind, numbers in (("reset", self.resets), ("slowdown", self.slowdowns)):
                if self.seen in numbers:
                    self.injected[kind] += 1
                    return kind
            return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def handle_any(self) -> None:
        body = self.body()
        fault = self.server.plan.fault(self.command, self.path)
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fault == "slowdown":
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(SLOW_DOWN)
            return
        self.forward(body)

    def forward(self, body: bytes) -> None:
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_url: str, plan: FaultPlan):
        super().__init__(("127.0.0.1", 0), Handler)
        parsed = urlparse(upstream_url)
        self.upstream = (parsed.hostname, parsed.port)
        self.plan = plan
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
