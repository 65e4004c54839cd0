"""The ``file`` channel: each post becomes one JSON line in a file (the demo's channel, and a dry run).

One line per post::

    {"key": ..., "channel": ..., "platform": ..., "language": ..., "post_key": ..., "text": ...,
     "length": ..., "limit": ..., "shortened": ..., "fallbacks": [...], "link": ..., "facets": [...],
     "card": {...} | null, "image": {"path", "alt"} | null, "published_at": "2026-03-10T09:00:00+00:00"}

``key`` is the outbox row's key (the same on every attempt): a key already in the file is SENT again
without a second line, so a crash between writing and recording the outcome never doubles a post. The
file is locked (``fcntl.flock``) while it is read and appended to, and the line is on disk (``fsync``)
before SENT is returned, so several processes may write one file. A line cut off by a crash (no
newline at the end) is removed before the next one is written. ``remote_id`` is ``<file name>:<line
number>``.

A file that cannot be written because of the path (permission denied, read-only file system, a folder
where the file should be, a file where a folder should be) is FAILED with ``pause``: someone has to fix
the path. Any other OS error (disk full, I/O error) is RETRY.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imk_outreach.models import Post
from imk_outreach.publishers.base import Outcome, PostResult, PublishError

__all__ = ["FileOptions", "FilePublisher"]

log = logging.getLogger(__name__)

# errors of the path itself: retrying cannot help until someone fixes it
_PATH_ERRORS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENOENT, errno.EEXIST,
    errno.ELOOP,
}  # fmt: skip


@dataclass(frozen=True)
class FileOptions:
    """``path``: the JSON-lines file (absolute, or relative to the working directory); its folder is
    created when missing."""

    channel: str
    path: Path


class _NotAFile(OSError):
    """The path exists but is no regular file (a FIFO or device would block or never end)."""


class FilePublisher:
    """Appends posts to a JSON-lines file. Safe across threads and processes (an exclusive lock)."""

    def __init__(self, options: FileOptions) -> None:
        self.options = options
        self.path = Path(options.path)

    def publish(self, post: Post, key: str) -> PostResult:
        """Append ``post`` unless a line with ``key`` (and this channel) is already in the file."""
        try:
            return self._append(post, key)
        except OSError as exc:
            return self._failure(exc)

    def verify(self) -> str:
        """``writes to <path>``, after creating the folder and opening the file for appending.

        :raises PublishError: the folder cannot be created or the file not opened; the message names
            the path and why.
        """
        try:
            self._open().close()
        except OSError as exc:
            result = self._failure(exc)
            raise PublishError(self.options.channel, result.reply, retryable=not result.pause) from None
        return f"writes to {self.path}"

    def close(self) -> None:
        """Nothing stays open between posts."""

    # -- writing ----------------------------------------------------------------------------------------

    def _open(self) -> _LockedFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return _LockedFile(self.path)

    def _append(self, post: Post, key: str) -> PostResult:
        with self._open() as file:
            content = file.read_all()
            content = file.drop_torn_tail(content)
            found = _find(content, key, self.options.channel)
            if found is not None:
                reply = f"already written: line {found} of {self.path} has key {key}"
                return PostResult(Outcome.SENT, reply, remote_id=f"{self.path.name}:{found}")
            number = content.count(b"\n") + 1
            file.append(_line(post, key, self.options.channel), previous_size=len(content))
        remote_id = f"{self.path.name}:{number}"
        return PostResult(Outcome.SENT, f"written: line {number} of {self.path}", remote_id=remote_id)

    def _failure(self, exc: OSError) -> PostResult:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EEXIST:  # mkdir: a file where a folder of the path should be
            reason = "a file is in the way of its folder"
        if exc.filename and str(exc.filename) != str(self.path):
            reason += f" ({exc.filename})"
        if isinstance(exc, _NotAFile) or exc.errno in _PATH_ERRORS:
            text = f"cannot write {self.path}: {reason}; fix the channel's path or its permissions"
            return PostResult(Outcome.FAILED, text, pause=True)
        return PostResult(Outcome.RETRY, f"cannot write {self.path} now: {reason}")


class _LockedFile:
    """The file opened for reading and appending, under an exclusive ``flock`` until closed."""

    def __init__(self, path: Path) -> None:
        existed = path.exists()
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                raise _NotAFile(errno.EINVAL, "not a regular file", str(path))
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if not existed:  # the new directory entry survives a crash too
                _fsync_folder(path.parent)
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self) -> _LockedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        os.close(self.fd)  # releases the lock

    def read_all(self) -> bytes:
        size = os.fstat(self.fd).st_size
        chunks: list[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(self.fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def drop_torn_tail(self, content: bytes) -> bytes:
        """Remove a last line without a newline: a write cut off by a crash, never reported SENT."""
        if not content or content.endswith(b"\n"):
            return content
        keep = content.rfind(b"\n") + 1
        log.warning(
            "removing an incomplete last line (%d bytes) at the end of the posts file", len(content) - keep
        )
        os.ftruncate(self.fd, keep)
        return content[:keep]

    def append(self, data: bytes, previous_size: int) -> None:
        """Write ``data`` and fsync it; on failure the file is cut back to ``previous_size``."""
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, previous_size)
            except OSError:
                log.warning("could not remove a partly written line; the next post removes it")
            raise


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _find(content: bytes, key: str, channel: str) -> int | None:
    """The 1-based number of the line already holding ``key`` for ``channel``, or None."""
    needle = _dumps(key).encode()
    if needle not in content:  # the common case: no need to parse every line
        return None
    for number, raw in enumerate(content.split(b"\n"), start=1):
        if needle not in raw:
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a line edited by hand
        if isinstance(entry, dict) and entry.get("key") == key and entry.get("channel") == channel:
            return number
    return None


def _line(post: Post, key: str, channel: str) -> bytes:
    entry: dict[str, Any] = {
        "key": key,
        "channel": channel,
        "platform": post.platform,
        "language": post.language,
        "post_key": post.key,
        "text": post.text,
        "length": post.length,
        "limit": post.limit,
        "shortened": post.shortened,
        "fallbacks": list(post.fallbacks),
        "link": post.link,
        "facets": [asdict(facet) for facet in post.facets],
        "card": asdict(post.card) if post.card is not None else None,
        "image": {"path": post.image.path, "alt": post.image.alt} if post.image is not None else None,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return (_dumps(entry) + "\n").encode()


def _dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    # U+2028/U+2029 are line breaks to str.splitlines() and some JSON-lines readers
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
