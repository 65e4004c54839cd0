"""The SMTP sender for bulk delivery: every session runs as a coroutine on one event loop in one
background thread.

:class:`SmtpSender` (threads with smtplib) spends most of a message's time handing the interpreter lock
between its threads; here one thread speaks all sessions with non-blocking sockets, so building messages
(the caller's thread) and sending overlap with far less switching. The contract is the same: same
options, same outcomes and classification (shared helpers from :mod:`smtp`), same errors, and
:meth:`submit` to hand over a message without waiting for it. RFC 2920 PIPELINING is used when offered.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from types import TracebackType
from typing import Self

import dkim

from imk_outreach.publishers.base import Outcome, PublishError, SendResult
from imk_outreach.publishers.smtp import (
    CHANNEL,
    SmtpOptions,
    _check_options,
    _classify,
    _envelope_address,
    _lost,
    _reply_text,
    _Signer,
)

Job = tuple[str, str, "bytes | Callable[[], bytes]", "Future[SendResult]"]
Ready = tuple["Future[SendResult]", str, str, bytes]  # running, built: envelope and payload
_CRLF = b"\r\n"
QUIT_TIMEOUT = 5.0  # a polite goodbye never holds up a shutdown longer than this


class Aborted(Exception):
    """(From a Future) :meth:`AsyncSmtpSender.abort` cut the session before the server answered: the
    message may or may not have arrived."""


class _Refused(Exception):
    """The server answered a set-up command (greeting, STARTTLS, AUTH) with an error code."""

    def __init__(self, code: int, text: str, login: bool = False) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text, self.login = code, text, login


class _Misconfigured(Exception):
    """STARTTLS or AUTH wanted but not offered: no retry helps."""


class _Session:
    """One SMTP connection: replies, commands, EHLO features."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.features: dict[str, str] = {}
        self.stage = "mail"
        self.usable = True
        self.ahead: Ready | None = None  # the next message, its MAIL/RCPT/DATA already sent (RFC 2920)

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await self.reader.readline()  # the caller bounds the whole exchange with a timeout
            if not line.endswith(b"\n"):
                raise ConnectionResetError("connection closed by the server")
            lines.append(line)
            if line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise ConnectionError(f"not an SMTP reply: {lines[-1][:60]!r}") from None
        text = "\n".join(raw[4:].decode("utf-8", "replace").rstrip("\r\n") for raw in lines)
        return code, text

    async def command(self, line: str) -> tuple[int, str]:
        self.writer.write(line.encode("ascii") + _CRLF)
        return await self.reply()

    async def ehlo(self, name: str) -> None:
        code, text = await self.command(f"EHLO {name}")
        if code != 250:
            raise _Refused(code, text)
        self.features = {}
        for line in text.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            self.features[keyword.lower()] = params

    async def close(self, polite: bool) -> None:
        self.usable = False
        try:
            if polite:
                async with asyncio.timeout(min(self.timeout, QUIT_TIMEOUT)):
                    await self.command("QUIT")
        except (OSError, TimeoutError, ConnectionError):
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, TimeoutError, ConnectionError, ssl.SSLError):
            pass


class AsyncSmtpSender:
    """``submit(envelope_from, recipient, data)`` -> a Future of the :class:`SendResult`; ``send`` waits
    for it. Thread-safe. Up to ``options.connections`` sessions, each reused for many messages.

    :raises PublishError: (from the Future) nothing can be sent: login refused, TLS/AUTH not offered,
        certificate not trusted, 5xx greeting.
    """

    def __init__(self, options: SmtpOptions) -> None:
        _check_options(options)
        self._options = options
        self._where = f"smtp server {options.host}:{options.port}"
        self._context = options.tls_context or ssl.create_default_context()
        self._signer = (
            _Signer(options.dkim_key, options.dkim_selector, options.dkim_domain)
            if options.dkim_key
            else None
        )
        self._interval = 1.0 / options.rate_per_second if options.rate_per_second > 0 else 0.0
        self._next_slot = 0.0
        self._closed = False
        self._aborted = False
        self._lock = threading.Lock()
        self._workers: list[asyncio.Task[None]] = []
        self._sessions: weakref.WeakSet[_Session] = weakref.WeakSet()  # open, idle or in use
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sessions", daemon=True)
        self._thread.start()
        self._queue: asyncio.Queue[Job | None] = asyncio.run_coroutine_threadsafe(
            self._make_queue(), self._loop
        ).result()
        self._dispatcher = asyncio.run_coroutine_threadsafe(self._dispatch(), self._loop)

    async def _make_queue(self) -> asyncio.Queue[Job | None]:
        return asyncio.Queue()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the caller's side -----------------------------------------------------------------------------

    def submit(
        self, envelope_from: str, recipient: str, data: bytes | Callable[[], bytes]
    ) -> Future[SendResult]:
        """Queue one message; the Future resolves when the server answered (or the attempt failed).

        ``data`` may be a function that builds the bytes: it then runs on the session thread right
        before sending, so a caller that only claims and marks leaves the building to that thread
        (one thread doing the CPU work instead of two taking turns). A ValueError from it fails that
        message alone ("cannot build the message").
        """
        future: Future[SendResult] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("AsyncSmtpSender is closed")
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (envelope_from, recipient, data, future))
        return future

    def _prepare(
        self, envelope_from: str, recipient: str, data: bytes | Callable[[], bytes]
    ) -> tuple[str, str, bytes] | SendResult:
        try:
            envelope_from, recipient = _envelope_address(envelope_from), _envelope_address(recipient)
        except ValueError as exc:
            return SendResult(Outcome.FAILED, None, str(exc))
        try:
            payload = data() if callable(data) else data
        except ValueError as exc:
            return SendResult(Outcome.FAILED, None, f"cannot build the message: {exc}")
        try:
            return (
                envelope_from,
                recipient,
                self._signer.header(payload) + payload if self._signer else payload,
            )
        except dkim.DKIMException as exc:
            return SendResult(Outcome.FAILED, None, f"cannot DKIM-sign the message: {exc}")

    def send(self, envelope_from: str, recipient: str, data: bytes | Callable[[], bytes]) -> SendResult:
        return self.submit(envelope_from, recipient, data).result()

    def close(self) -> None:
        """Finish what was submitted, QUIT every session, stop the loop thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        try:
            self._dispatcher.result()
        except CancelledError:  # abort() came meanwhile and stops the loop itself
            return
        self._stop_loop()

    def abort(self) -> None:
        """Stop now, whatever the server does: a message not yet begun is cancelled (its Future's
        ``cancelled()`` is true), one in the middle of its exchange fails with :class:`Aborted`, every
        session is cut without QUIT, the loop thread ends. Safe to call more than once, and after
        :meth:`close` (then it does nothing)."""
        with self._lock:
            if self._aborted or self._loop.is_closed():
                return
            self._aborted = self._closed = True
        asyncio.run_coroutine_threadsafe(self._abort(), self._loop).result(timeout=QUIT_TIMEOUT * 2)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # -- the loop's side -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """``connections`` workers share a stack of idle sessions: a job takes the most recently used
        one, and a new session is opened only when none is idle (as the threaded sender's pool does)."""
        idle: list[_Session] = []
        self._workers = [asyncio.create_task(self._work(idle)) for _ in range(self._options.connections)]
        await asyncio.gather(*self._workers)
        for session in idle:
            await session.close(polite=True)

    async def _abort(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                job[3].cancel()
        for session in list(self._sessions):
            if session.ahead is not None and not session.ahead[0].done():
                session.ahead[0].set_exception(Aborted(f"{self._where}: stopped before the server answered"))
            await session.close(polite=False)

    async def _work(self, idle: list[_Session]) -> None:
        """Take jobs until the end; a session that carries the next message (its envelope already sent
        after the last one's data) goes on with it rather than back to the idle stack."""
        ready: Ready | None = None
        session: _Session | None = None
        presented = False
        while True:
            if ready is None:
                job = await self._queue.get()
                if job is None:
                    break
                ready, session, presented = self._start(job), (idle.pop() if idle else None), False
                if ready is None:
                    self._park(session, idle)
                    continue
                try:
                    await self._pace()
                except asyncio.CancelledError:
                    ready[0].set_exception(Aborted(f"{self._where}: stopped before its turn"))
                    raise
            ready, session, presented = await self._run(ready, session, presented, idle)
        self._queue.put_nowait(None)  # let the next worker see the end too

    def _start(self, job: Job) -> Ready | None:
        """Mark the job running and build its message; None when it is settled already (cancelled, or it
        cannot be built)."""
        envelope_from, recipient, data, future = job
        if not future.set_running_or_notify_cancel():
            return None
        prepared = self._prepare(envelope_from, recipient, data)
        if isinstance(prepared, SendResult):
            future.set_result(prepared)
            return None
        return (future, *prepared)

    @staticmethod
    def _park(session: _Session | None, idle: list[_Session]) -> None:
        if session is not None and session.usable:
            idle.append(session)

    async def _run(
        self, ready: Ready, session: _Session | None, presented: bool, idle: list[_Session]
    ) -> tuple[Ready | None, _Session | None, bool]:
        """Send one message; :returns: the next message if this session took it along (with the session
        to go on with, or None when that died and the next message must start afresh)."""
        future, envelope_from, recipient, payload = ready
        try:
            result, used = await self._deliver(session, envelope_from, recipient, payload, presented)
        except asyncio.CancelledError:  # abort(): the answer will never come
            future.set_exception(Aborted(f"{self._where}: stopped before the server answered"))
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the Future
            future.set_exception(exc)
            return None, None, False
        future.set_result(result)
        ahead = used.ahead if used is not None else None
        if used is None or ahead is None:
            self._park(used, idle)
            return None, None, False
        used.ahead = None
        return (ahead, used, True) if used.usable else (ahead, None, False)

    async def _pace(self) -> None:
        if not self._interval:
            return
        now = self._loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _deliver(
        self, session: _Session | None, envelope_from: str, recipient: str, payload: bytes, presented: bool
    ) -> tuple[SendResult, _Session | None]:
        """:returns: the outcome and the session it went over (usable or not: it may carry the next
        message), None when no session could be opened."""
        if session is not None:
            result = await self._transaction(
                session, envelope_from, recipient, payload, reused=True, presented=presented
            )
            if result is not None:
                return result, session
        try:
            session = await self._open()
        except (OSError, TimeoutError, ConnectionError, _Refused, _Misconfigured) as exc:
            return self._connect_failure(exc), None
        result = await self._transaction(session, envelope_from, recipient, payload, reused=False)
        assert result is not None  # only a reused session can be stale
        return result, session

    async def _open(self) -> _Session:
        options = self._options
        tls = self._context if options.security == "tls" else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                options.host, options.port, ssl=tls, server_hostname=options.host if tls else None
            ),
            options.timeout,
        )
        session = _Session(reader, writer, options.timeout)
        self._sessions.add(session)
        try:
            async with asyncio.timeout(options.timeout):
                await self._handshake(session)
        except BaseException:
            await session.close(polite=False)
            raise
        return session

    async def _handshake(self, session: _Session) -> None:
        options = self._options
        code, text = await session.reply()
        if code != 220:
            raise _Refused(code, text)
        name = options.helo or "localhost"
        await session.ehlo(name)
        if options.security == "starttls":
            if "starttls" not in session.features:
                raise _Misconfigured(f"{self._where} does not offer STARTTLS")
            code, text = await session.command("STARTTLS")
            if code != 220:
                raise _Refused(code, text)
            await session.writer.start_tls(self._context, server_hostname=options.host)
            await session.ehlo(name)
        if options.username is not None:
            await self._login(session)

    async def _login(self, session: _Session) -> None:
        mechanisms = session.features.get("auth", "").upper().split()
        user, password = self._options.username or "", self._options.password or ""
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
            code, text = await session.command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechanisms:
            code, text = await session.command("AUTH LOGIN")
            for secret in (user, password):
                if code != 334:
                    break
                code, text = await session.command(base64.b64encode(secret.encode()).decode("ascii"))
        else:
            raise _Misconfigured(
                f"{self._where} offers no AUTH PLAIN or LOGIN (offered: {mechanisms or 'none'})"
            )
        if code != 235:
            raise _Refused(code, text, login=True)

    def _connect_failure(self, exc: BaseException) -> SendResult:
        """RETRY when trying later can help; PublishError when a human must fix something first."""
        if isinstance(exc, _Refused):
            reason = _reply_text(exc.code, exc.text)
            if exc.code >= 500 and exc.login:
                user = self._options.username
                raise PublishError(
                    CHANNEL, f"{self._where} refused login as {user!r}: {reason}", retryable=False
                )
            if exc.code >= 500:
                raise PublishError(CHANNEL, f"{self._where} refuses service: {reason}", retryable=False)
            return SendResult(Outcome.RETRY, exc.code, f"{self._where}: {reason}")
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            raise PublishError(CHANNEL, f"TLS with {self._where} failed: {exc}", retryable=False)
        if isinstance(exc, _Misconfigured):
            raise PublishError(CHANNEL, str(exc), retryable=False)
        return SendResult(
            Outcome.RETRY, None, f"cannot connect to {self._where}: {exc or type(exc).__name__}"
        )

    async def _transaction(
        self,
        session: _Session,
        envelope_from: str,
        recipient: str,
        payload: bytes,
        *,
        reused: bool,
        presented: bool = False,
    ) -> SendResult | None:
        """MAIL/RCPT/DATA and the message (``presented``: the envelope was sent already, after the last
        message's data). None: a reused session was found dead before anything of the message went out,
        so the caller may repeat on a new session."""
        session.stage = "mail"
        try:
            async with asyncio.timeout(self._options.timeout):
                return await self._exchange(session, envelope_from, recipient, payload, reused, presented)
        except (OSError, TimeoutError, ConnectionError) as exc:
            stage = session.stage
            await session.close(polite=False)
            if reused and stage == "mail":
                return None
            return _lost(stage, exc)

    async def _exchange(
        self,
        session: _Session,
        envelope_from: str,
        recipient: str,
        payload: bytes,
        reused: bool,
        presented: bool,
    ) -> SendResult | None:
        lines = _envelope_lines(session, envelope_from, recipient, payload)
        refused = await self._envelope(session, lines, presented)
        if refused is not None:
            if reused and refused.code == 421 and session.stage == "mail":
                await session.close(polite=False)
                return None  # the server closed an idle session ("421 timeout")
            return await self._after_refusal(session, refused)
        session.stage = "payload"
        session.writer.write(_dot_stuffed(payload))
        self._look_ahead(session)
        await session.writer.drain()
        code, text = await session.reply()
        if code != 250:
            return await self._after_refusal(session, _classify(code, text, mailbox=True))
        return SendResult(Outcome.SENT, code, _reply_text(code, text))

    def _look_ahead(self, session: _Session) -> None:
        """RFC 2920: the end of a message's data may be followed at once by the next message's MAIL,
        RCPT and DATA. So the next job's envelope travels with this message, saving a round trip, and
        its message is built while the server is busy with this one (not while other sessions wait).
        Not with a rate limit (each message waits for its slot)."""
        if self._interval or "pipelining" not in session.features:
            return
        ready = None
        while ready is None:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if job is None:
                self._queue.put_nowait(None)  # the end: leave it for the workers
                return
            ready = self._start(job)
        _, envelope_from, recipient, payload = ready
        lines = _envelope_lines(session, envelope_from, recipient, payload)
        session.writer.write(("\r\n".join(lines) + "\r\n").encode("ascii"))
        session.ahead = ready

    async def _envelope(self, session: _Session, lines: list[str], presented: bool) -> SendResult | None:
        """Send MAIL, RCPT and DATA (in one write when PIPELINING is offered; not at all when
        ``presented``); None when DATA got 354."""
        if presented or "pipelining" in session.features:
            if not presented:
                session.writer.write(("\r\n".join(lines) + "\r\n").encode("ascii"))
            mail, rcpt, data = await session.reply(), await session.reply(), await session.reply()
        else:
            mail = await session.command(lines[0])
            rcpt = await session.command(lines[1]) if mail[0] == 250 else (503, "not sent")
            data = await session.command(lines[2]) if rcpt[0] in (250, 251) else (503, "not sent")
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            await session.command(".")  # DATA accepted without a valid recipient: end it empty
        if mail[0] != 250:
            return _classify(*mail, mailbox=False)
        if rcpt[0] not in (250, 251):
            return _classify(*rcpt, mailbox=True)
        if data[0] != 354:
            session.stage = "data"
            return _classify(*data, mailbox=True)
        return None

    async def _after_refusal(self, session: _Session, result: SendResult) -> SendResult:
        """RSET so the next message on this session starts clean; a session that cannot is dropped."""
        if result.code == 421:
            await session.close(polite=False)
            return result
        if session.ahead is not None:  # the final reply to DATA ended the transaction; the next one began
            return result
        try:
            code, _ = await session.command("RSET")
            if code != 250:
                await session.close(polite=True)
        except (OSError, TimeoutError, ConnectionError):
            await session.close(polite=False)
        return result


def _envelope_lines(session: _Session, envelope_from: str, recipient: str, payload: bytes) -> list[str]:
    size = f" SIZE={len(payload)}" if "size" in session.features else ""
    return [f"MAIL FROM:<{envelope_from}>{size}", f"RCPT TO:<{recipient}>", "DATA"]


def _dot_stuffed(payload: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency: a line starting with "." gets another one. ``bytes.replace`` (a
    single pass in C) rather than a regular expression: quoted-printable HTML has many such lines, and
    ``re.sub`` over a 40 KB message cost more CPU than everything else the session does with it."""
    if payload.startswith(b"."):
        payload = b"." + payload
    payload = payload.replace(b"\n.", b"\n..")
    return payload + (b".\r\n" if payload.endswith(_CRLF) else b"\r\n.\r\n")
