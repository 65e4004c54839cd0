"""Moves the clock of every Python process the test suite starts, when IMK_TEST_CLOCK_SHIFT is set.

``IMK_TEST_CLOCK_SHIFT=+400d make test`` runs the suite as if it were 400 days later (or ``-30d``
earlier): the test process and each child process it starts (``imk-outreach run``, ``worker``,
``deliver``) travel by the same offset with time-machine, the clock still ticking. Debian's faketime
would do the same from outside, but libfaketime 0.9.10 hangs Python's timed waits
(``threading.Event().wait(0.1)`` never returns), so the suite moves its clock itself. Only the wall
clock moves (``time.time``, ``datetime.now``); ``time.monotonic`` stays, as it does on a real machine.
This directory is put on PYTHONPATH for child processes by tests/conftest.py; nothing here is used
unless the variable is set.
"""

from __future__ import annotations

import os


def shifted_start() -> None:
    shift = os.environ.get("IMK_TEST_CLOCK_SHIFT", "").strip()
    if not shift:
        return
    from datetime import UTC, datetime, timedelta

    import time_machine

    days = float(shift.removesuffix("d"))
    time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True).start()


shifted_start()
