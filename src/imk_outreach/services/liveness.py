"""Who this process is, and whether another process on this host is provably gone.

A process is named ``host:pid:start``; ``start`` is its start time in clock ticks since boot (Linux
``/proc/PID/stat`` field 22), so a pid the OS reuses for another program never passes for the old one.
Where ``/proc`` is missing, only a pid that no longer exists counts as gone.
"""

from __future__ import annotations

import functools
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from imk_outreach.models import ProcessInfo


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of the whole line


@functools.cache
def _identity(pid: int) -> tuple[str, str, datetime]:
    host = socket.gethostname()
    start = _start_ticks(pid) or str(int(datetime.now(UTC).timestamp()))
    return host, start, datetime.now(UTC)


def this_process(role: str) -> ProcessInfo:
    """This process as a :class:`ProcessInfo` in ``role`` (the name stays the same for its life)."""
    pid = os.getpid()
    host, start, started_at = _identity(pid)
    return ProcessInfo(
        name=f"{host}:{pid}:{start}",
        role=role,
        host=host,
        pid=pid,
        started_at=started_at,
        heartbeat_at=started_at,
    )


def parse_name(name: str) -> tuple[str, int, str] | None:
    """``host:pid:start`` (optionally ``/suffix``, e.g. one delivery loop of the process) ->
    (host, pid, start); None for a name of another shape."""
    host, _, rest = name.split("/", 1)[0].rpartition(":")
    host, _, pid_text = host.rpartition(":")
    if not host or not pid_text.isdigit():
        return None
    return host, int(pid_text), rest


def provably_gone(name: str) -> bool:
    """True only for a process of *this* host that no longer runs (its pid is free, or now belongs to a
    process started at another time). A process of another host is never provably gone: its lease says."""
    parsed = parse_name(name)
    if parsed is None:
        return False
    host, pid, start = parsed
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return start != _identity(pid)[1]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    ticks = _start_ticks(pid)
    return ticks is not None and ticks != start
