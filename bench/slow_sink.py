"""A local SMTP sink that answers each message ``--delay`` ms after its last byte, as a remote relay does,
and counts recipients so a benchmark can check that nobody was served twice.

It parses no more than SMTP needs: input is read in chunks, pipelined commands are answered in one write
(as Postfix does), a message body is never stored (only searched for the terminating ``CRLF.CRLF``), so
the sink's CPU stays below that of the workers it measures. It offers PIPELINING. Extra commands for the
benchmark: ``XSTAT`` answers ``250 <messages> <recipients> <served twice> <mean delay ms> <max delay ms>
<CPU s> <spin s> <turnaround ms>`` (the delay as applied: from the arrival of a message's last byte to
its reply's write; the sink's CPU seconds, of which ``spin`` went on the final wait; the clients' mean
time from a reply to the last byte of the next message on the same session: what the client adds to
each message's cycle); ``XRESET`` forgets everything counted.

The delay is applied from the moment the last byte reached the sink's kernel, and the sink's own mean
stays within 0.1 ms of ``--delay`` even on a busy machine. How it got there, measured with
``bench/sink_probe.py`` (2,000 messages of 40 KB on 4 sessions; ms from the client's last byte to the
``250``, mean): the first version (asyncio streams, ``await asyncio.sleep(delay)``) answered after
21.5-21.7 ms on an idle machine, so no client could pass 92 % of ``4 / 20 ms``. The causes:

* the default selector (epoll) waits in whole milliseconds, rounded up (and in Python 3.11 rounded up
  twice, through floating point), so a timer fired 0.5-2 ms late. A :class:`selectors.SelectSelector`
  loop waits in microseconds (the sink has a few dozen sockets at most): 20.9 ms;
* the arrival was taken when the loop read the data, 0.2-0.6 ms after it came (wake-up latency of this
  virtual machine, more when the CPUs are busy). Each read now asks the kernel for the receive time
  (``SO_TIMESTAMPNS``), and the deadline is that plus the delay: 20.5 ms;
* a microsecond timer still wakes 0.1-0.3 ms late here, and with workers, PostgreSQL and tests on two
  cores the sink waited several milliseconds for a CPU (sink's record 20.7-21.1 ms at load 3-4). So
  it runs with real-time priority (``SCHED_FIFO`` where it may: root or CAP_SYS_NICE; else it says so
  on stderr and goes on), and :class:`Timer` wakes ``margin`` early; the session then prepares its
  reply (the replies to pipelined commands included) and spins to the deadline before the write.
  ``margin`` follows the 90th percentile of the lateness it observes (0.15-0.3 ms here). Result at
  load 1.5-4: sink's record 20.02-20.15 ms, client 20.14-20.6 ms (the rest is the client's own
  wake-up), 97-98 % of 200/s for the probe;
* ``XSTAT`` counted the recipients served twice by a scan of all of them: 3 ms at 100,000, asked
  every 20 ms by the benchmark, blocking every reply due meanwhile. It is counted as they come now.

Cost: 0.45-0.55 ms CPU per message in the probe (the first version: 0.35-0.40), of which 0.03-0.09 ms
spinning; in the scale-out benchmark 0.6-0.66 s per 1,000 messages against the worker's 1.0. Tried and
dropped: a timer thread (``Condition.wait``, then ``call_soon_threadsafe``: two wake-ups, 20.6 ms and
more CPU); ``time.sleep`` for the last 2.5 ms on the loop (20.3 ms, and it blocks the other
sessions); a spin inside each timer callback (sessions whose deadlines coincide waited for each other's
spin, which drove the margin to 2 ms and the spin to 0.5-1 ms per message). ``--plain`` runs without
priority and spin, to compare.

    python bench/slow_sink.py --port 2525 --delay 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import os
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable

_END = b"\r\n.\r\n"
_CHUNK = 262_144
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python 3.11 does not export it
_ANCILLARY = socket.CMSG_SPACE(16)  # one struct timespec
INITIAL_MARGIN = 0.0003  # s: how early a timer wakes before its deadline, to start with
MAX_MARGIN = 0.001  # s: the longest spin
QUANTILE = 0.9  # the share of wake-ups that should come before the deadline
STEP = 0.00001  # s: how fast the margin follows


class Timer:
    """Calls each callback with its deadline (the loop's clock) ``margin`` before it; the callback
    prepares its reply, then waits out the rest with :meth:`spin`.

    ``margin`` tracks the :data:`QUANTILE` of how late the loop's timer wakes (a stochastic quantile
    estimate: up by ``STEP x QUANTILE`` after a late wake-up, down by ``STEP x (1 - QUANTILE)`` after
    an early one), bounded by :data:`MAX_MARGIN`. One wake-up serves every deadline within its margin.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, precise: bool = True) -> None:
        self.loop, self.precise = loop, precise
        self.margin = INITIAL_MARGIN if precise else 0.0
        self.spun = 0.0  # seconds spent spinning
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._count = 0

    def at(self, deadline: float, callback: Callable[[float], None]) -> None:
        self._count += 1
        heapq.heappush(self._heap, (deadline, self._count, callback))
        self._arm()

    def spin(self, deadline: float) -> None:
        """Return at ``deadline`` (at once when it has passed)."""
        start = now = time.monotonic()
        while now < deadline:
            now = time.monotonic()
        self.spun += now - start

    def _arm(self) -> None:
        if not self._heap:
            return
        wake = self._heap[0][0] - self.margin
        if self._handle is not None:
            if self._handle.when() <= wake:
                return
            self._handle.cancel()
        self._handle = self.loop.call_at(wake, self._fire)

    def _fire(self) -> None:
        assert self._handle is not None
        woke, planned, self._handle = time.monotonic(), self._handle.when(), None
        if self.precise:
            self._follow(woke - planned)
        while self._heap and self._heap[0][0] - self.margin <= time.monotonic():
            deadline, _, callback = heapq.heappop(self._heap)
            callback(deadline)
        self._arm()

    def _follow(self, late: float) -> None:
        if late > self.margin:
            self.margin = min(MAX_MARGIN, self.margin + STEP * QUANTILE)
        else:
            self.margin = max(0.0, self.margin - STEP * (1 - QUANTILE))


class Sink:
    """What every session shares: the delay, the timer, and what was counted."""

    def __init__(self, delay: float, timer: Timer) -> None:
        self.delay, self.timer = delay, timer
        self.served: collections.Counter[str] = collections.Counter()
        self.reset()

    def stat(self) -> bytes:
        twice = self.twice
        mean = 1000 * self.delay_sum / self.messages if self.messages else 0.0
        cpu = time.process_time() - self.cpu_base
        return (
            f"250 {self.messages} {len(self.served)} {twice} {mean:.4f} {1000 * self.delay_max:.4f} "
            f"{cpu:.4f} {self.timer.spun - self.spun_base:.4f} {self.turnaround_ms():.4f}\r\n"
        ).encode()

    def reset(self) -> None:
        self.served.clear()
        self.messages = self.twice = 0
        self.delay_sum = self.delay_max = 0.0
        self.turnaround_sum, self.turnarounds = 0.0, 0
        self.cpu_base, self.spun_base = time.process_time(), self.timer.spun

    def turnaround_ms(self) -> float:
        return 1000 * self.turnaround_sum / self.turnarounds if self.turnarounds else 0.0

    def turned(self, seconds: float) -> None:
        """A client took ``seconds`` from a reply to the last byte of its next message."""
        self.turnaround_sum += seconds
        self.turnarounds += 1

    def record(self, recipients: list[str], applied: float) -> None:
        self.messages += 1
        for recipient in recipients:  # counted as they come: XSTAT is asked every 20 ms
            self.served[recipient] += 1
            self.twice += self.served[recipient] == 2
        self.delay_sum += applied
        self.delay_max = max(self.delay_max, applied)


class _Session:
    """One SMTP connection, read and written directly on the loop (``recvmsg`` for the timestamps)."""

    def __init__(self, sink: Sink, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.sink, self.loop, self.sock = sink, loop, sock
        self.buffer = bytearray()  # commands not yet answered; in DATA, the last bytes searched
        self.in_data = False
        self.recipients: list[str] = []
        self.replies: list[bytes] = []
        self.out = b""  # what the socket did not take yet
        self.arrived: float | None = None  # while a message waits for its reply: its last byte's time
        self.replied: float | None = None  # when the last message's reply went out
        self.closed = self.quitting = False
        loop.add_reader(sock, self._readable)
        self._write(b"220 sink ESMTP\r\n")

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(_CHUNK, _ANCILLARY)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close()
            return
        self.buffer += data
        if self.arrived is None:
            self._consume(_arrival(self.loop.time(), ancillary))
            self._flush()

    def _answer(self, deadline: float) -> None:
        """The message's reply and those to the commands pipelined after it, in one write at
        ``deadline``."""
        if self.closed or self.arrived is None:
            return
        self.replies.append(b"250 2.0.0 Ok: queued\r\n")
        arrived, self.arrived, recipients = self.arrived, None, self.recipients
        self._consume(self.loop.time())
        self.sink.timer.spin(deadline)
        written = time.monotonic()
        self._flush()
        self.sink.record(recipients, written - arrived)
        self.replied = written

    def _consume(self, arrived: float) -> None:
        """Answer every complete command in the buffer (the replies wait in ``replies`` for
        :meth:`_flush`), up to the end of a message: its reply waits for the timer."""
        while not self.quitting:
            if self.in_data:
                if not self._end_of_data():
                    break
                self.arrived = arrived
                if self.replied is not None:
                    self.sink.turned(arrived - self.replied)
                self.sink.timer.at(arrived + self.sink.delay, self._answer)
                break
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                break
            line = bytes(self.buffer[:line_end])
            del self.buffer[: line_end + 2]
            reply = self._command(line)
            self.replies.append(reply)
            self.quitting = reply.startswith(b"221")

    def _end_of_data(self) -> bool:
        """Drop the message's bytes up to its end; False (keeping only a tail that may begin the end
        marker) while the end has not arrived."""
        end = self.buffer.find(_END)
        if end < 0:
            del self.buffer[: -(len(_END) - 1)]
            return False
        del self.buffer[: end + len(_END)]
        self.in_data = False
        return True

    def _flush(self) -> None:
        if self.replies:
            self._write(b"".join(self.replies))
            self.replies = []
        if self.quitting:
            self._close()

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close()
            return
        if sent < len(data):
            self.out = data[sent:]
            self.loop.add_writer(self.sock, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError:
            self._close()
            return
        self.out = self.out[sent:]
        if not self.out:
            self.loop.remove_writer(self.sock)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock)
        if self.out:
            self.loop.remove_writer(self.sock)
        self.sock.close()

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            return b"250-sink\r\n250-PIPELINING\r\n250 SIZE 100000000\r\n"
        if verb == b"MAIL":
            self.recipients = []
            return b"250 2.1.0 Ok\r\n"
        if verb == b"RCPT":
            self.recipients.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode().lower())
            return b"250 2.1.5 Ok\r\n"
        if verb == b"DATA":
            self.in_data = True
            self.buffer[:0] = b"\r\n"  # so a message that is empty still ends at CRLF.CRLF
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            return b"221 2.0.0 Bye\r\n"
        if verb == b"XSTA":
            return self.sink.stat()
        if verb == b"XRES":
            self.sink.reset()
        return b"250 2.0.0 Ok\r\n"


def _arrival(read_at: float, ancillary: list[tuple[int, int, bytes]]) -> float:
    """When the data read last reached the kernel, on the loop's (monotonic) clock: the kernel stamps
    it on the wall clock, so its age is subtracted from the moment of the read."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            age = time.time() - (seconds + nanoseconds / 1e9)
            return read_at - age if 0 <= age < 1 else read_at  # not across a step of the wall clock
    return read_at


def _listen(port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(256)
    listener.setblocking(False)
    return listener


def _accept(sink: Sink, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _Session(sink, loop, sock)


def raise_priority() -> None:
    """Real-time priority, so the replies do not wait for a CPU behind the workers they measure."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError) as exc:
        print(
            f"slow_sink: no real-time priority ({exc}); replies stretch when the CPUs are busy",
            file=sys.stderr,
        )


def serve(port: int, delay_ms: float, precise: bool = True) -> None:
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())  # timeouts in microseconds
    sink = Sink(delay_ms / 1000, Timer(loop, precise))
    listener = _listen(port)
    loop.add_reader(listener, _accept, sink, loop, listener)
    try:
        loop.run_forever()
    finally:
        listener.close()
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=20.0, help="ms before the reply to each message")
    parser.add_argument(
        "--plain", action="store_true", help="no real-time priority, no early wake-up and spin (to compare)"
    )
    args = parser.parse_args()
    if not args.plain:
        raise_priority()
    serve(args.port, args.delay, precise=not args.plain)


if __name__ == "__main__":
    main()
