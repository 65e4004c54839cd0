"""Scale-out: one campaign of 100,000 subscribers on PostgreSQL delivered by 1, 2 and 4 ``imk-outreach
worker`` processes (real CLI processes sharing the database) to a sink that answers each message 20 ms
after it arrived (:mod:`bench.slow_sink`, its own process), as a remote relay does. One worker is then
bound by latency (4 sessions at 20 ms: at most 200 messages/s), not by this machine's cores.

Figures: the rate (first to last message seen by the sink), the workers' CPU time (user+sys) per 1,000
messages, the ratios to one worker, and who was served twice (counted in the sink). Targets: one worker
>= 90 % of what its sessions allow; 2 workers >= 1.9x and 4 workers >= 3.6x the rate of one; CPU per
message within 1.2x of one worker's; nobody served twice.

Calibration, printed beside the rates: the sink's real delay (its own record, from a message's last
byte to the reply) and its CPU, and the workers' turnaround (from a reply to the last byte of the next
message on the same session). A session's cycle is the delay plus the turnaround, so the rate of one
worker is about ``4 / (delay + turnaround)``: the turnaround is what the workers leave on the table.

    python bench/scaleout_bench.py [--subscribers 20000] [--workers 1 2 4] [--repeat 3]
    python bench/sink_probe.py     # the sink's latency as a bare client sees it
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

SUBSCRIBERS = 100_000
SESSIONS = 4
DELAY_MS = 20.0
WORKERS = (1, 2, 4)
TICK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    workers: int
    messages: int
    seconds: float
    cpu: float  # the workers' user+sys seconds while the sink received
    twice: int  # recipients the sink saw more than once
    recipients: int  # distinct recipients the sink saw
    others: float  # the sink's and PostgreSQL's CPU seconds meanwhile (the machine they share)
    sink: SinkStat  # the sink's count and calibration over the run (its real delay)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.cpu / self.messages

    @property
    def others_per_1000(self) -> float:
        return 1000 * self.others / self.messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the sink ----------------------------------------------------------------------------------------


def start_sink(port: int, delay_ms: float = DELAY_MS) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(ROOT / "bench" / "slow_sink.py"), "--port", str(port)]
    sink = subprocess.Popen([*command, "--delay", str(delay_ms)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sink_command(port, "NOOP")
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise RuntimeError("the SMTP sink did not start")


def sink_command(port: int, command: str) -> str:
    with socket.create_connection(("127.0.0.1", port), 2) as sock:
        stream = sock.makefile("rwb")
        stream.readline()
        stream.write(command.encode() + b"\r\nQUIT\r\n")
        stream.flush()
        return stream.readline().decode().strip()


@dataclass(frozen=True)
class SinkStat:
    """The sink's XSTAT answer (see :mod:`bench.slow_sink`)."""

    messages: int
    recipients: int  # distinct recipients
    twice: int  # recipients served more than once
    delay_ms: float  # mean delay applied, from a message's last byte to its reply
    delay_max_ms: float
    cpu: float  # the sink's CPU seconds since it started or was last reset
    spin: float  # of which spent spinning towards deadlines
    turnaround_ms: float  # the clients' mean time from a reply to the last byte of their next message


def sink_stat(port: int) -> SinkStat:
    answer = sink_command(port, "XSTAT")
    fields = answer.split()
    if fields[0] != "250" or len(fields) != 9:
        raise RuntimeError(f"the sink answered XSTAT with {answer!r}: not '250' and eight figures")
    return SinkStat(int(fields[1]), int(fields[2]), int(fields[3]), *map(float, fields[4:]))


# -- the database ------------------------------------------------------------------------------------


def prepare_template(server: object, workdir: Path, port: int, subscribers: int) -> Path:
    """A database ``imk_base`` with the subscribers and the queued edition; each run copies it."""
    from bench.deliver_bench import prepare

    create_database(server, "imk_base")
    return prepare(workdir, port, subscribers, SESSIONS, database_url=server.url("imk_base"))  # type: ignore[attr-defined]


def create_database(server: object, name: str, template: str | None = None) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")  # type: ignore[attr-defined]
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    engine.dispose()


def run_config(server: object, base: Path, name: str) -> Path:
    create_database(server, name, template="imk_base")
    data = yaml.safe_load(base.read_text("utf-8"))
    data["database_url"] = server.url(name)  # type: ignore[attr-defined]
    config = base.with_name(f"config-{name}.yaml")
    config.write_text(yaml.safe_dump(data), "utf-8")
    return config


# -- the workers -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0  # gone meanwhile
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def helpers_cpu(sink: int, postmaster: int) -> dict[int, float]:
    """CPU seconds so far of the sink and of our PostgreSQL server's processes."""
    pids = [sink, postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(entry) == postmaster:
            pids.append(int(entry.name))
    return {pid: cpu_seconds(pid) for pid in pids}


def _parent(entry: Path) -> int | None:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def postmaster_pid(server: object) -> int:
    return int((server.datadir / "postmaster.pid").read_text().split()[0])  # type: ignore[attr-defined]


def load() -> float:
    return os.getloadavg()[0]


def helpers_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def measure(
    config: Path, port: int, helpers: tuple[int, int], workers: int, expected: int, timeout: float
) -> Run:
    sink_command(port, "XRESET")
    command = [sys.executable, "-m", "imk_outreach", "worker", "--poll", "0.2", "--config", str(config)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(workers)
    ]
    try:
        first, cpu_first = _wait_first(port, procs, timeout)
        helpers_first = helpers_cpu(*helpers)
        last, count = _wait_all(port, procs, expected, timeout)
        cpu_last = sum(cpu_seconds(p.pid) for p in procs)
        others = helpers_used(helpers_first, helpers_cpu(*helpers))
    finally:
        _stop(procs)
    stat = sink_stat(port)
    return Run(workers, count, last - first, cpu_last - cpu_first, stat.twice, stat.recipients, others, stat)


def _wait_first(port: int, procs: list[subprocess.Popen[bytes]], timeout: float) -> tuple[float, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu = sum(cpu_seconds(p.pid) for p in procs)
        if sink_stat(port).messages > 0:
            return time.monotonic(), cpu
        _check_alive(procs)
        time.sleep(0.02)
    raise RuntimeError("no message arrived")


def _wait_all(
    port: int, procs: list[subprocess.Popen[bytes]], expected: int, timeout: float
) -> tuple[float, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = sink_stat(port).messages
        if messages >= expected:
            return time.monotonic(), messages
        _check_alive(procs)
        time.sleep(0.02)
    raise RuntimeError(f"only {sink_stat(port).messages} of {expected} messages arrived in {timeout:.0f} s")


def _check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"worker exited with {proc.returncode}: {err[-2000:]}")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# -- report ------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    return f" (runs: {', '.join(f'{v:,.1f}' for v in values)}; sd {statistics.stdev(values):,.1f})"


def calibration(runs: list[Run]) -> list[str]:
    """The sink's real delay (from a message's last byte to its reply) and its CPU cost, and what the
    workers add to each message's cycle: a rate means little without the latency it was measured at."""
    delay = statistics.median([r.sink.delay_ms for r in runs])
    cpu = statistics.median([1000 * r.sink.cpu / r.messages for r in runs])
    spin = statistics.median([1000 * r.sink.spin / r.messages for r in runs])
    turnaround = statistics.median([r.sink.turnaround_ms for r in runs])
    return [
        f"sink's real delay: {delay:.2f} ms (target {DELAY_MS:.0f}; max "
        f"{max(r.sink.delay_max_ms for r in runs):.1f}); sink CPU {cpu:.2f} s per 1,000 messages "
        f"({spin:.2f} of it spinning)",
        f"workers' turnaround: {turnaround:.2f} ms from a reply to the next message's last byte "
        f"on the session{spread([r.sink.turnaround_ms for r in runs])}",
    ]


def report(runs: dict[int, list[Run]], subscribers: int) -> None:
    allowed = SESSIONS * 1000 / DELAY_MS
    rates = {n: statistics.median([r.rate for r in rs]) for n, rs in runs.items()}
    cpus = {n: statistics.median([r.cpu_per_1000 for r in rs]) for n, rs in runs.items()}
    targets = {1: None, 2: 1.9, 4: 3.6}
    for n, rs in runs.items():
        print(
            f"  {n} worker{'s' if n > 1 else ' '}: {rates[n]:7,.1f} messages/s{spread([r.rate for r in rs])}"
        )
        print(f"             CPU {cpus[n]:5.2f} s per 1,000 messages{spread([r.cpu_per_1000 for r in rs])}")
        others = statistics.median([r.others_per_1000 for r in rs])
        print(f"             (sink + PostgreSQL meanwhile: {others:4.2f} s per 1,000 messages)")
        for line in calibration(rs):
            print(f"             {line}")
    if 1 in rates:
        print(
            f"  1 worker vs its sessions' limit ({allowed:.0f}/s): {rates[1] / allowed:.1%}"
            f"  (target >= 90 %: {verdict(rates[1] >= 0.9 * allowed)})"
        )
        real = statistics.median([r.sink.delay_ms for r in runs[1]])
        limit = SESSIONS * 1000 / real
        print(
            f"  (at the sink's real delay of {real:.2f} ms the limit is {limit:.1f}/s: "
            f"{rates[1] / limit:.1%})"
        )
        for n in rates:
            target = targets.get(n)
            if n == 1:
                continue
            ratio, cpu_ratio = rates[n] / rates[1], cpus[n] / cpus[1]
            goal = f"target >= {target:.1f}x: {verdict(ratio >= target)}" if target else "no target"
            print(f"  {n} workers / 1: rate {ratio:.2f}x ({goal})")
            print(
                f"  {n} workers / 1: CPU per message {cpu_ratio:.2f}x "
                f"(target <= 1.20x: {verdict(cpu_ratio <= 1.2)})"
            )
    else:
        print("  ratios: not computed (no run with 1 worker)")
    all_runs = [r for rs in runs.values() for r in rs]
    twice = sum(r.twice for r in all_runs)
    complete = all(r.recipients == subscribers for r in all_runs)
    print(
        f"  served twice: {twice} over {len(all_runs)} runs; every run served all {subscribers:,}: "
        f"{complete}  (target: 0 and True: {verdict(twice == 0 and complete)})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    print(
        f"== scale-out: {args.subscribers:,} subscribers on PostgreSQL, imk-outreach worker processes, "
        f"{SESSIONS} sessions each, sink answering after {DELAY_MS:.0f} ms =="
    )
    from tests.support.postgres import start_server

    try:
        server = start_server()
    except RuntimeError as exc:
        print(f"  NOT RUN: PostgreSQL could not start: {exc}")
        return
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory(prefix="imk-scaleout-") as tmp:
            base = prepare_template(server, Path(tmp), port, args.subscribers)
            runs: dict[int, list[Run]] = {n: [] for n in args.workers}
            helpers = (sink.pid, postmaster_pid(server))
            timeout = 60 + 4 * args.subscribers / (SESSIONS * 1000 / DELAY_MS)
            for attempt in range(args.repeat):
                for n in args.workers:
                    config = run_config(server, base, f"imk_run_{n}_{attempt}")
                    before = load()
                    run = measure(config, port, helpers, n, args.subscribers, timeout)
                    runs[n].append(run)
                    print(
                        f"  run {attempt + 1}, {n} worker(s): {run.rate:7,.1f}/s, "
                        f"CPU {run.cpu_per_1000:.2f} s/1,000 (sink+PostgreSQL {run.others_per_1000:.2f}), "
                        f"twice {run.twice}; sink's delay {run.sink.delay_ms:.3f} ms "
                        f"(max {run.sink.delay_max_ms:.1f}), turnaround {run.sink.turnaround_ms:.2f} ms; "
                        f"load before {before:.1f}",
                        flush=True,
                    )
            report(runs, args.subscribers)
    finally:
        sink.terminate()
        sink.wait(5)
        server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
