"""A real HTTP server on 127.0.0.1 serving fixture files, with ETag/Last-Modified and a few
misbehaving routes for fault tests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CONTENT_TYPES = {
    ".xml": "application/rss+xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".html": "text/html; charset=utf-8",
    ".yaml": "application/yaml",
}
LAST_MODIFIED = formatdate(1_763_000_000, usegmt=True)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent connects (1 s SYN retransmit)
    daemon_threads = True


class FixtureServer:
    """Serves ``root``; ``routes`` maps a path to (status, headers, body) for made-up answers.

    Special paths: ``/redirect/N/<path>`` redirects N times then serves <path>; ``/slow/<secs>/<path>``
    waits before answering; ``/drop`` closes the connection without an answer; ``/huge`` streams
    more bytes than any sane cap without a Content-Length.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.hits: Counter[str] = Counter()
        self.conditional_hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def start(self) -> FixtureServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                server.hits[path] += 1
                server.user_agents.append(self.headers.get("User-Agent", ""))
                if self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"):
                    server.conditional_hits[path] += 1
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._serve(path)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _serve(self, path: str) -> None:
                if path in server.routes:
                    status, headers, body = server.routes[path]
                    return self._answer(status, headers, body)
                parts = path.strip("/").split("/")
                if parts[0] == "redirect" and len(parts) > 2:
                    count = int(parts[1])
                    target = "/" + (
                        "/".join(parts[2:]) if count <= 1 else f"redirect/{count - 1}/" + "/".join(parts[2:])
                    )
                    return self._answer(302, {"Location": target}, b"")
                if parts[0] == "slow" and len(parts) > 2:
                    time.sleep(float(parts[1]))
                    return self._serve("/" + "/".join(parts[2:]))
                if parts[0] == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return None
                if parts[0] == "huge":
                    return self._huge()
                return self._file(path)

            def _file(self, path: str) -> None:
                target = (server.root / path.lstrip("/")).resolve()
                if not target.is_file() or server.root.resolve() not in target.parents:
                    return self._answer(404, {"Content-Type": "text/plain"}, b"not found")
                body = target.read_bytes()
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    return self._answer(304, {"ETag": etag}, b"")
                headers = {
                    "Content-Type": CONTENT_TYPES.get(target.suffix, "application/octet-stream"),
                    "ETag": etag,
                    "Last-Modified": LAST_MODIFIED,
                }
                return self._answer(200, headers, body)

            def _huge(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b"<!-- padding -->" * 4096
                try:
                    for _ in range(2000):  # ~130 MB at most; the client stops far earlier
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304 and body:
                    self.wfile.write(body)

        return Handler
