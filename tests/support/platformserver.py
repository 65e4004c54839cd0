"""A real HTTP server on 127.0.0.1 that speaks a social platform's API for tests, with scripted faults.

Each platform's fake (tests/support/fake_x.py, fake_mastodon.py, ...) registers its routes on a
:class:`PlatformServer`; the real client library (tweepy, Mastodon.py, atproto, httpx) talks to it over
TCP. Tests inject faults per route::

    with PlatformServer() as server:
        server.route("POST", r"/api/v1/statuses", handler)       # handler(Request) -> Reply
        server.fail("POST", r"/api/v1/statuses", Reply(429, {"error": "slow down"}, {"Retry-After": "30"}))
        server.stall("POST", r"/api/v1/statuses", seconds=2.0)  # reads the request, answers too late
        ... client calls server.url ...
        assert server.requests[-1].json()["status"] == "..."

Faults are used once each, in the order given (``times=`` repeats one). Every request, faulted or not, is
recorded with its method, path, query, headers and body.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list: sent as JSON; bytes/str: sent as they are
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        if self.body is None:
            return b"", "application/json"
        return json.dumps(self.body).encode(), "application/json; charset=utf-8"


Handler = Callable[[Request], Reply]


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    reply: Reply | None  # None: stall
    stall: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class PlatformServer:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._stalls: list[threading.Event] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -----------------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer ``method`` requests whose path fully matches ``pattern`` (a regex) with ``handler``."""
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def fail(self, method: str, pattern: str, reply: Reply, times: int = 1) -> None:
        """The next ``times`` matching requests get ``reply`` instead of the route's answer."""
        with self._lock:
            for _ in range(times):
                self._faults.append(_Fault(method.upper(), re.compile(pattern), reply))

    def stall(self, method: str, pattern: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` matching requests are read (and recorded), then left unanswered for
        ``seconds`` before the connection is closed: a client timeout after the request went out."""
        with self._lock:
            for _ in range(times):
                self._faults.append(_Fault(method.upper(), re.compile(pattern), None, seconds))

    def requests_to(self, method: str, pattern: str) -> list[Request]:
        compiled = re.compile(pattern)
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and compiled.fullmatch(r.path)]

    # -- life cycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PlatformServer:
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        for event in self._stalls:
            event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> PlatformServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ----------------------------------------------------------------------------------------

    def _take_fault(self, request: Request) -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.method == request.method and fault.pattern.fullmatch(request.path):
                    return self._faults.pop(index)
        return None

    def _answer(self, request: Request) -> Reply | None:
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None:
            if fault.reply is not None:
                return fault.reply
            event = threading.Event()
            self._stalls.append(event)
            event.wait(fault.stall)
            return None
        for method, pattern, handler in self._routes:
            if method == request.method and pattern.fullmatch(request.path):
                return handler(request)
        return Reply(404, {"error": f"no route for {request.method} {request.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b"".join(_chunks(self.rfile))
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = owner._answer(request)
                if reply is None:  # stalled: close without an answer
                    self.close_connection = True
                    return
                data, content_type = reply.encoded()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **dict(reply.headers)}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        return _Handler


def _chunks(stream: Any) -> Iterator[bytes]:
    while True:
        size = int(stream.readline().strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return
        yield stream.read(size)
        stream.readline()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
