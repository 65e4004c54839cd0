"""The real app served by uvicorn on 127.0.0.1 in a thread of the test (or benchmark) process, for a real
browser or HTTP client to talk to over TCP, and :class:`Recorder`, which notes every POST the app got.

::

    sock = listening_socket()                  # bound first: public_url needs the port
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ... settings with public_url=url ...
    with served(create_app(settings), sock):
        ... GET url + "/admin" ...
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Recorder", "Seen", "listening_socket", "served"]


def listening_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 (uvicorn listens on it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def served(app: ASGIApp, sock: socket.socket, start_timeout: float = 15) -> Iterator[None]:
    """``app`` served on ``sock`` until the block ends (then the server stops and the socket closes)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(start_timeout)
        sock.close()


@dataclass(frozen=True)
class Seen:
    """A POST the app received: its path, ``Origin``, whether the staff session cookie came with it,
    and the status it was answered with."""

    path: str
    origin: str | None
    with_session: bool
    status: int


class Recorder:
    """Wraps the app and appends a :class:`Seen` to ``seen`` for every POST, as the server got it."""

    def __init__(self, app: ASGIApp, seen: list[Seen], cookie: str = "imk_admin") -> None:
        self.app = app
        self.seen = seen
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = [part.strip().split("=", 1)[0] for part in headers.get("cookie", "").split(";")]
        status: list[int] = []

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording)
        self.seen.append(Seen(scope["path"], headers.get("origin"), self.cookie in cookies, status[0]))
