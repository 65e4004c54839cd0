"""A local SMTP sink that answers each message ``--delay`` ms after its last byte, as a remote relay does,
and counts recipients so a benchmark can check that nobody was served twice.

One asyncio process that parses no more than SMTP needs: input is read in chunks, pipelined commands are
answered in one write (as Postfix does), and a message is consumed by searching for the terminating
``CRLF.CRLF``, so the sink costs little CPU next to the workers it measures. It offers PIPELINING. Two
extra commands for the benchmark: ``XSTAT`` answers ``250 <messages> <recipients> <served twice>``;
``XRESET`` forgets everything counted.

    python bench/slow_sink.py --port 2525 --delay 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections

_END = b"\r\n.\r\n"


class Sink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.served: collections.Counter[str] = collections.Counter()
        self.messages = 0

    def stat(self) -> bytes:
        twice = sum(1 for count in self.served.values() if count > 1)
        return f"250 {self.messages} {len(self.served)} {twice}\r\n".encode()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        state = _Session()
        try:
            while chunk := await reader.read(262_144):
                state.buffer += chunk
                if not await self._consume(state, writer):
                    break
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _consume(self, state: _Session, writer: asyncio.StreamWriter) -> bool:
        """Answer every complete command (and message) in the buffer; False after QUIT."""
        replies: list[bytes] = []
        while True:
            if state.in_data:
                end = state.buffer.find(_END, max(0, state.scanned - 4))
                if end < 0:
                    state.scanned = len(state.buffer)
                    break
                del state.buffer[: end + len(_END)]
                state.in_data, state.scanned = False, 0
                writer.write(b"".join(replies))
                replies = []
                await asyncio.sleep(self.delay)
                self.messages += 1
                self.served.update(state.recipients)
                replies.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            line_end = state.buffer.find(b"\r\n")
            if line_end < 0:
                break
            line = bytes(state.buffer[:line_end])
            del state.buffer[: line_end + 2]
            reply = self._command(state, line)
            replies.append(reply)
            if reply.startswith(b"221"):
                writer.write(b"".join(replies))
                return False
        writer.write(b"".join(replies))
        return True

    def _command(self, state: _Session, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            return b"250-sink\r\n250-PIPELINING\r\n250 SIZE 100000000\r\n"
        if verb == b"MAIL":
            state.recipients = []
            return b"250 2.1.0 Ok\r\n"
        if verb == b"RCPT":
            state.recipients.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode().lower())
            return b"250 2.1.5 Ok\r\n"
        if verb == b"DATA":
            state.in_data, state.scanned = True, 0
            state.buffer[:0] = b"\r\n"  # so a message that is empty still ends at CRLF.CRLF
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            return b"221 2.0.0 Bye\r\n"
        if verb == b"XSTA":
            return self.stat()
        if verb == b"XRES":
            self.served.clear()
            self.messages = 0
        return b"250 2.0.0 Ok\r\n"


class _Session:
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.in_data = False
        self.scanned = 0
        self.recipients: list[str] = []


async def serve(port: int, delay_ms: float) -> None:
    sink = Sink(delay_ms / 1000)
    server = await asyncio.start_server(sink.session, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=20.0, help="ms before the reply to each message")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
