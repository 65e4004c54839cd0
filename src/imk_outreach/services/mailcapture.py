"""A local mail capture for the demo: a real SMTP server (aiosmtpd) on 127.0.0.1 that writes every
message it receives into a Maildir, so the demo's newsletters can be opened with any mail reader."""

from __future__ import annotations

import mailbox
import socket
from pathlib import Path
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MailCapture:
    """``with MailCapture(folder) as capture:`` -> ``capture.port`` accepts mail into ``folder``."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self._controller = Controller(Mailbox(folder), hostname="127.0.0.1", port=self.port)

    def count(self) -> int:
        return len(mailbox.Maildir(str(self.folder), create=False))

    def __enter__(self) -> MailCapture:
        self._controller.start()
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self._controller.stop()
