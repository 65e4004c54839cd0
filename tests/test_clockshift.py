"""The suite's moved clock (IMK_TEST_CLOCK_SHIFT) reaches child processes, and only the wall clock moves."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import CLOCK_SHIFT_DIR

PROBE = "import threading, time; threading.Event().wait(0.05); time.sleep(0.01); print(time.time())"


def child_time(shift: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "IMK_TEST_CLOCK_SHIFT"}
    env["PYTHONPATH"] = os.pathsep.join([str(CLOCK_SHIFT_DIR), env.get("PYTHONPATH", "")])
    if shift is not None:
        env["IMK_TEST_CLOCK_SHIFT"] = shift
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def test_a_child_process_travels_by_the_shift_and_its_timed_waits_still_return() -> None:
    here = time.time()
    moved = child_time("+400d")
    plain = child_time(None)
    mine = float(os.environ.get("IMK_TEST_CLOCK_SHIFT", "0").removesuffix("d")) * 86400
    assert abs(moved - (here - mine + 400 * 86400)) < 120
    assert abs(plain - (here - mine)) < 120
