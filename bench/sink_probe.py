"""How late does the SMTP sink of the scale-out benchmark (:mod:`bench.slow_sink`) really answer? A probe
that sends messages over parallel sessions, as a worker does (RFC 2920: the next envelope follows a
message's data in the same write), and times each reply from the moment the last byte of the
terminating ``.`` CRLF has been handed to the kernel until the ``250`` has arrived.

Printed: the client's view (mean, p50, p99, max), the sink's own record of the delay it applied (from
XSTAT), the sink's CPU seconds for the run, and the rate the sessions reached next to the
``connections / delay`` a perfect sink allows. Blocking sockets, one thread per session: a reply wakes
its thread at once (no timer of the probe's own in the path).

    python bench/sink_probe.py [--messages 2000] [--connections 4] [--delay 20] [--size 40000]
    python bench/sink_probe.py --port 2525   # a sink that runs already
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from bench.scaleout_bench import SinkStat, free_port, sink_stat, start_sink  # noqa: E402

ENVELOPE = b"MAIL FROM:<probe@bench.example>\r\nRCPT TO:<r%d@bench.example>\r\nDATA\r\n"


@dataclass
class Probe:
    """Latencies in seconds, collected from every session's thread."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _read_replies(reader: BinaryIO, count: int) -> list[bytes]:
    """``count`` complete replies (multi-line replies count once)."""
    replies: list[bytes] = []
    while len(replies) < count:
        line = reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("the sink closed the session")
        if line[3:4] != b"-":
            replies.append(line)
    return replies


def _session(port: int, numbers: range, body: bytes, probe: Probe) -> None:
    """One SMTP session sending a message to each recipient number, envelopes pipelined."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        _read_replies(reader, 1)
        sock.sendall(b"EHLO probe\r\n")
        _read_replies(reader, 1)
        sock.sendall(ENVELOPE % numbers[0])
        for index, number in enumerate(numbers):
            if _read_replies(reader, 3)[-1][:3] != b"354":
                raise ConnectionError(f"envelope for r{number} refused")
            follow = ENVELOPE % numbers[index + 1] if index + 1 < len(numbers) else b""
            sock.sendall(body)
            sent = time.perf_counter()
            if follow:
                sock.sendall(follow)
            reply = _read_replies(reader, 1)[0]
            latency = time.perf_counter() - sent
            if reply[:3] != b"250":
                raise ConnectionError(f"message to r{number} refused: {reply!r}")
            with probe.lock:
                probe.latencies.append(latency)
        sock.sendall(b"QUIT\r\n")


def _run_session(port: int, numbers: range, body: bytes, probe: Probe) -> None:
    try:
        _session(port, numbers, body, probe)
    except (OSError, ConnectionError) as exc:
        with probe.lock:
            probe.errors.append(str(exc))


def make_body(size: int) -> bytes:
    """A message of about ``size`` bytes with its terminating dot line (the last bytes sent)."""
    line = b"x" * 74 + b"\r\n"
    lines = max(1, size // len(line))
    return b"Subject: probe\r\n\r\n" + line * lines + b".\r\n"


def probe(port: int, messages: int, connections: int, size: int) -> tuple[Probe, float]:
    """Send ``messages`` over ``connections`` sessions; the probe and the seconds it took."""
    body, result = make_body(size), Probe()
    share = -(-messages // connections)
    threads = [
        threading.Thread(
            target=_run_session,
            args=(port, range(n * share, min(messages, (n + 1) * share)), body, result),
        )
        for n in range(connections)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(result: Probe, seconds: float, stat: SinkStat, delay_ms: float, connections: int) -> None:
    ms = [1000 * value for value in result.latencies]
    if not ms:
        print(f"  no message answered; errors: {result.errors[:3]}")
        return
    print(
        f"  client, last byte of '.' CRLF -> '250': mean {statistics.fmean(ms):.3f} ms, "
        f"p50 {percentile(ms, 0.5):.3f}, p99 {percentile(ms, 0.99):.3f}, max {max(ms):.3f} "
        f"(configured {delay_ms:g} ms)"
    )
    print(
        f"  sink's own record of the applied delay: mean {stat.delay_ms:.3f} ms, "
        f"max {stat.delay_max_ms:.3f}; the probe's turnaround {stat.turnaround_ms:.3f} ms"
    )
    rate, allowed = len(ms) / seconds, connections * 1000 / delay_ms
    print(
        f"  {len(ms):,} messages in {seconds:.2f} s: {rate:.1f}/s = {rate / allowed:.1%} of {allowed:.0f}/s; "
        f"sink CPU {stat.cpu:.3f} s ({1000 * stat.cpu / len(ms):.3f} ms per message, "
        f"{1000 * stat.spin / len(ms):.3f} of it spinning)"
    )
    if result.errors:
        print(f"  errors: {len(result.errors)}, first: {result.errors[0]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="a running sink (default: start bench/slow_sink.py)")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--delay", type=float, default=20.0, help="ms (the sink's --delay when started here)")
    parser.add_argument("--size", type=int, default=40_000, help="bytes per message")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    sink = None if args.port else start_sink(port, args.delay)
    try:
        from bench.scaleout_bench import sink_command

        sink_command(port, "XRESET")
        result, seconds = probe(port, args.messages, args.connections, args.size)
        stat = sink_stat(port)
        print(
            f"== sink probe: {args.messages:,} messages of {args.size:,} bytes, "
            f"{args.connections} sessions =="
        )
        report(result, seconds, stat, args.delay, args.connections)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(5)


if __name__ == "__main__":
    main()
