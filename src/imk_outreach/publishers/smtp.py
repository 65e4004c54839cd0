"""Email delivery over SMTP: a thread-safe pool of reused connections, a shared rate limit, DKIM.

One :class:`SmtpSender` serves every delivery thread of a process. Each :meth:`SmtpSender.send` borrows
one of at most ``connections`` open SMTP connections, runs one transaction on it (``MAIL``, ``RCPT``,
``DATA`` with the message bytes exactly as given) and hands it back for the next message. A connection
that broke is dropped and the next send opens a new one.

How a transaction's end maps to an outcome (the outbox row's next state):

* ``250`` after the data: SENT, the reply (``250 2.0.0 Ok: queued as ...``) is kept.
* ``4xx`` anywhere: RETRY. ``5xx``: FAILED; ``bounced`` when the enhanced status code is ``5.1.x``
  (bad mailbox) on ``RCPT`` or after the data, never for a refused sender (that is our address).
* No answer (connection refused, reset, timed out): RETRY, ``code`` None.
* The connection lost **after** the message data went out but before the server answered: RETRY as
  well. The outcome is unknown: the server may have queued the message. Email has no way to ask, so a
  later retry may deliver a second copy; it carries the same ``Message-ID`` (derived from the outbox
  row), which lets mail clients and archives recognise it. Losing the message silently would be worse.
* Nothing can go out at all (wrong password, TLS or AUTH not offered, certificate not trusted, the
  server refusing service with a 5xx greeting, invalid DKIM key): :class:`PublishError` with
  ``retryable=False``; the service stops and reports.

A pooled connection the server closed while it sat idle (server-side idle timeout) fails on ``MAIL``
before anything of the message was sent; that send is repeated once on a fresh connection instead of
being reported as RETRY.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TypeVar

import dkim
from dkim.crypto import parse_pem_private_key

from imk_outreach.publishers.base import Outcome, PublishError, SendResult

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["CHANNEL", "DKIM_HEADERS", "SmtpOptions", "SmtpSender"]

log = logging.getLogger(__name__)
_R = TypeVar("_R", SendResult, SendResult | None)

CHANNEL = "email"
DKIM_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
    "MIME-Version", "Content-Type",
)  # fmt: skip
MIN_DKIM_BITS = 1024  # receivers ignore shorter RSA keys (RFC 8301)
_BAD_MAILBOX = re.compile(r"5\.1\.\d{1,3}(?!\d)")  # enhanced status 5.1.x: bad destination mailbox
# an address smtplib passes on unchanged: no quoted local part, no comments, no white space or controls
# (smtplib's quoteaddr would "parse" "a@x\r\nRCPT TO:<b@y>" into b@y rather than refuse it)
_ENVELOPE_ADDRESS = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+)@([^\s@<>()\[\]\\,;:\"\x00-\x1f\x7f]+)")
_DKIM_PROBE = b"From: probe@example.org\r\nTo: probe@example.org\r\nSubject: probe\r\n\r\nprobe\r\n"


@dataclass(frozen=True)
class SmtpOptions:
    """How to reach the SMTP server; the service layer builds it from the settings.

    ``security``: ``none`` (plain), ``starttls`` (upgrade after EHLO; refused if not offered) or ``tls``
    (implicit TLS, usually port 465). ``rate_per_second`` is shared by all connections (0 = unlimited).
    ``helo`` is the name sent in EHLO (None = this host's FQDN). ``dkim_key`` is an RSA private key in
    PEM form (PKCS#1 or PKCS#8); with it every message is signed for ``dkim_domain`` with
    ``dkim_selector``. ``tls_context`` None means ``ssl.create_default_context()``.
    """

    host: str = "127.0.0.1"
    port: int = 1025
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    connections: int = 4
    rate_per_second: float = 0.0
    helo: str | None = None
    dkim_key: bytes | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    tls_context: ssl.SSLContext | None = None


class _Connection(smtplib.SMTP):
    """An SMTP connection that knows how far its current transaction got and keeps the final reply.

    ``stage``: ``mail`` (MAIL/RCPT), ``data`` (DATA command sent), ``payload`` (the message data is
    being or has been sent: from here on a lost connection leaves the outcome unknown).
    """

    stage = "mail"
    final_reply: tuple[int, bytes] | None = None

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        self.stage = "data"
        if isinstance(msg, bytes) and not msg.startswith(b".") and b"\n." not in msg:
            self.final_reply = self._data_as_is(msg)
        else:
            self.final_reply = super().data(msg)
        return self.final_reply

    def sendmail(  # type: ignore[override]
        self,
        from_addr: str,
        to_addrs: str | list[str],
        msg: bytes,
        mail_options: tuple[str, ...] = (),
        rcpt_options: tuple[str, ...] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's ``sendmail``, with RFC 2920 PIPELINING for one recipient when the server offers it:
        MAIL, RCPT and DATA go out in one write and their three replies are read after, which saves two
        round trips per message. Refusals raise the same exceptions smtplib raises, so callers classify
        them the same way."""
        self.ehlo_or_helo_if_needed()
        recipients = [to_addrs] if isinstance(to_addrs, str) else to_addrs
        if len(recipients) != 1 or mail_options or rcpt_options or not self.has_extn("pipelining"):
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        size = f" size={len(msg)}" if self.has_extn("size") else ""
        recipient = recipients[0]
        envelope = (
            f"mail FROM:{smtplib.quoteaddr(from_addr)}{size}\r\nrcpt TO:{smtplib.quoteaddr(recipient)}\r\n"
        )
        self.send(envelope + "data\r\n")
        mail, rcpt, data = self.getreply(), self.getreply(), self.getreply()
        if mail[0] != 250 or rcpt[0] not in (250, 251) or data[0] != 354:
            self._pipeline_refused(data[0] == 354)
            if mail[0] != 250:
                raise smtplib.SMTPSenderRefused(mail[0], mail[1], from_addr)
            if rcpt[0] not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
            raise smtplib.SMTPDataError(data[0], data[1])
        self.stage = "data"
        self.final_reply = self._payload(msg)
        if self.final_reply[0] != 250:
            raise smtplib.SMTPDataError(*self.final_reply)
        return {}

    def _pipeline_refused(self, data_accepted: bool) -> None:
        """After a refusal inside a pipelined group: end a DATA the server accepted anyway with an empty
        body it will refuse (no valid recipient), so the session is back at a clean state."""
        if data_accepted:
            self.send(b".\r\n")
            self.getreply()

    def _payload(self, msg: bytes) -> tuple[int, bytes]:
        if msg.startswith(b".") or b"\n." in msg:
            msg = re.sub(rb"(?m)^\.", b"..", msg)
        self.send(msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n"))
        return self.getreply()

    def _data_as_is(self, msg: bytes) -> tuple[int, bytes]:
        """smtplib's ``data`` for a message with no line starting with ".": dot-stuffing would change
        nothing, so the regex pass over the whole message (a large share of the per-message cost of a
        40 KB newsletter) is skipped. The protocol exchange is the same."""
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        self.send(msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n"))
        return self.getreply()

    def send(self, s: ReadableBuffer | str) -> None:
        if self.stage == "data" and not isinstance(s, str):  # commands are str, the payload bytes
            self.stage = "payload"
        super().send(s)


class _SslConnection(_Connection, smtplib.SMTP_SSL):
    """The same over implicit TLS."""


class _Pacer:
    """A token bucket holding one token, shared by all threads: sends start at least ``1/rate``
    seconds apart, so n sends take at least ``(n - 1) / rate`` seconds. Each caller reserves its slot
    under the lock and sleeps outside it."""

    def __init__(self, rate_per_second: float) -> None:
        self._interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            slot = max(time.monotonic(), self._next)
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _Signer:
    """DKIM signing (rsa-sha256, relaxed/relaxed) of complete messages."""

    def __init__(self, key: bytes, selector: str | None, domain: str | None) -> None:
        if not selector or not domain:
            raise PublishError(
                CHANNEL, "dkim_key is set but not dkim_selector and dkim_domain", retryable=False
            )
        self._key = key.replace(b"\r\n", b"\n")  # dkimpy's PEM reader wants LF line ends
        self._selector = selector.encode("ascii")
        self._domain = domain.encode("idna")
        self._headers = [name.encode("ascii") for name in DKIM_HEADERS]
        self._check_key()

    def _check_key(self) -> None:
        try:
            bits = parse_pem_private_key(self._key)["modulus"].bit_length()
            self.header(_DKIM_PROBE)
        except Exception as exc:  # dkimpy raises assorted types for bad keys: its own, ValueError, IndexError
            reason = f"dkim_key is not a usable RSA private key (PEM): {exc}"
            raise PublishError(CHANNEL, reason, retryable=False) from exc
        if bits < MIN_DKIM_BITS:
            raise PublishError(
                CHANNEL, f"dkim_key has {bits} bits; receivers need at least {MIN_DKIM_BITS}", retryable=False
            )

    def header(self, data: bytes) -> bytes:
        """The ``DKIM-Signature`` header field for ``data``, CRLF-terminated, to be put before it.

        :raises dkim.DKIMException: the message cannot be signed (malformed headers).
        """
        signature: bytes = dkim.sign(
            data,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self._headers,
        )
        return signature


class SmtpSender:
    """Sends messages over a pool of reused SMTP connections; safe to share between threads.

    :raises PublishError: (at construction) the options are unusable, e.g. an invalid DKIM key.
    """

    def __init__(self, options: SmtpOptions) -> None:
        _check_options(options)
        self._options = options
        self._where = f"smtp server {options.host}:{options.port}"
        self._context = options.tls_context or ssl.create_default_context()
        self._signer = None
        if options.dkim_key:
            self._signer = _Signer(options.dkim_key, options.dkim_selector, options.dkim_domain)
        self._pacer = _Pacer(options.rate_per_second)
        self._slots = threading.BoundedSemaphore(options.connections)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------------

    def send(self, envelope_from: str, recipient: str, data: bytes) -> SendResult:
        """Send ``data`` (a complete RFC 5322 message, CRLF line ends) to ``recipient``.

        :returns: SENT with the server's reply, RETRY (4xx, no answer, connection lost) or FAILED (5xx;
            ``bounced`` for 5.1.x on RCPT or after the data).
        :raises PublishError: nothing can be sent at all (authentication refused, TLS or AUTH not
            offered, certificate not trusted, 5xx greeting).
        :raises RuntimeError: the sender was closed.
        """
        try:
            envelope_from, recipient = _envelope_address(envelope_from), _envelope_address(recipient)
        except ValueError as exc:
            return SendResult(Outcome.FAILED, None, str(exc))
        try:
            payload = self._signer.header(data) + data if self._signer else data
        except dkim.DKIMException as exc:
            return SendResult(Outcome.FAILED, None, f"cannot DKIM-sign the message: {exc}")
        with self._slots:
            self._pacer.wait()
            conn = self._take_idle()
            if conn is not None:
                result = self._transaction(conn, envelope_from, recipient, payload, reused=True)
                if result is not None:
                    return result
                log.debug("pooled connection to %s had gone stale; reconnecting", self._where)
            return self._send_fresh(envelope_from, recipient, payload)

    def _send_fresh(self, envelope_from: str, recipient: str, payload: bytes) -> SendResult:
        try:
            conn = self._open()
        except (OSError, smtplib.SMTPException) as exc:
            return self._connect_failure(exc)
        result = self._transaction(conn, envelope_from, recipient, payload, reused=False)
        assert result is not None  # only a reused connection can be stale
        return result

    def _transaction(
        self, conn: _Connection, envelope_from: str, recipient: str, payload: bytes, *, reused: bool
    ) -> SendResult | None:
        """One MAIL/RCPT/DATA on ``conn``; hands ``conn`` back (or drops it). None: a reused connection
        turned out dead before any of the message was sent, so the caller may repeat on a new one."""
        conn.stage, conn.final_reply = "mail", None
        try:
            conn.sendmail(envelope_from, [recipient], payload)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients.get(recipient, (-1, b"recipient refused"))
            return self._failed(conn, _classify(code, reply, mailbox=True))
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, 421 anywhere
            if reused and conn.stage == "mail" and exc.smtp_code == 421:
                return self._drop(conn, None)  # closing an idle connection: "421 timeout"
            result = _classify(exc.smtp_code, exc.smtp_error, mailbox=conn.stage != "mail")
            return self._failed(conn, result)
        except smtplib.SMTPServerDisconnected as exc:
            return self._drop(conn, None if reused and conn.stage == "mail" else _lost(conn.stage, exc))
        except smtplib.SMTPException as exc:  # (an OSError too) nothing smtplib raises here in practice
            return self._drop(conn, SendResult(Outcome.RETRY, None, f"unexpected SMTP problem: {exc}"))
        except OSError as exc:  # reset, broken pipe, timeout outside smtplib's own wrapping
            return self._drop(conn, None if reused and conn.stage == "mail" else _lost(conn.stage, exc))
        self._give_back(conn)
        code, reply = conn.final_reply or (250, b"")
        return SendResult(Outcome.SENT, code, _reply_text(code, reply))

    def _failed(self, conn: _Connection, result: SendResult) -> SendResult:
        """After a refused transaction: RSET so the next one on this connection starts clean (sendmail
        may have sent one already; a second is harmless), then hand the connection back."""
        if conn.sock is not None:
            try:
                conn.rset()
            except (OSError, smtplib.SMTPException):
                return self._drop(conn, result)
        self._give_back(conn)
        return result

    # -- connections -------------------------------------------------------------------------------

    def _open(self) -> _Connection:
        """A connected, EHLO'd, TLS-upgraded and logged-in connection."""
        options = self._options
        if options.security == "tls":
            conn: _Connection = _SslConnection(
                options.host, options.port, options.helo, timeout=options.timeout, context=self._context
            )
        else:
            conn = _Connection(options.host, options.port, options.helo, timeout=options.timeout)
        try:
            if options.security == "starttls":
                conn.ehlo()
                conn.starttls(context=self._context)
                conn.ehlo()
            if options.username is not None:
                conn.login(options.username, options.password or "")
        except BaseException:
            conn.close()
            raise
        log.debug("connected to %s (%s)", self._where, options.security)
        return conn

    def _connect_failure(self, exc: OSError | smtplib.SMTPException) -> SendResult:
        """RETRY when trying later can help; PublishError when no message can go out until a human
        fixes something."""
        if isinstance(exc, smtplib.SMTPAuthenticationError) and exc.smtp_code >= 500:
            user = self._options.username
            reason = _reply_text(exc.smtp_code, exc.smtp_error)
            raise PublishError(CHANNEL, f"{self._where} refused login as {user!r}: {reason}", retryable=False)
        if isinstance(exc, smtplib.SMTPResponseException):
            reason = _reply_text(exc.smtp_code, exc.smtp_error)
            if exc.smtp_code >= 500:
                raise PublishError(CHANNEL, f"{self._where} refuses service: {reason}", retryable=False)
            return SendResult(Outcome.RETRY, exc.smtp_code, f"{self._where}: {reason}")
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            raise PublishError(CHANNEL, f"TLS with {self._where} failed: {exc}", retryable=False)
        if isinstance(exc, smtplib.SMTPException) and not isinstance(exc, smtplib.SMTPServerDisconnected):
            # STARTTLS or AUTH not offered, no common AUTH mechanism: a configuration problem
            raise PublishError(CHANNEL, f"{self._where}: {exc}", retryable=False)
        return SendResult(Outcome.RETRY, None, f"cannot connect to {self._where}: {exc}")

    def _take_idle(self) -> _Connection | None:
        with self._lock:
            if self._closed:
                raise RuntimeError("SmtpSender is closed")
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and conn.sock is not None:
                self._idle.append(conn)
                return
        _quit(conn)

    def _drop(self, conn: _Connection, result: _R) -> _R:
        conn.close()
        return result

    def close(self) -> None:
        """QUIT every idle connection; connections in use are closed when their send ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _quit(conn)


# -- helpers ---------------------------------------------------------------------------------------


def _check_options(options: SmtpOptions) -> None:
    problems = []
    if options.security not in ("none", "starttls", "tls"):
        problems.append(f"security must be none, starttls or tls, not {options.security!r}")
    if not 0 < options.port < 65536:
        problems.append(f"port {options.port} is out of range")
    if options.connections < 1:
        problems.append(f"connections must be at least 1, not {options.connections}")
    if options.rate_per_second < 0:
        problems.append(f"rate_per_second must be 0 (unlimited) or more, not {options.rate_per_second}")
    if options.timeout <= 0:
        problems.append(f"timeout must be positive, not {options.timeout}")
    if options.username is not None and options.password is None:
        problems.append(f"username {options.username!r} is set but no password")
    if problems:
        raise PublishError(CHANNEL, "; ".join(problems), retryable=False)


def _classify(code: int, reply: bytes | str, *, mailbox: bool) -> SendResult:
    """4xx: RETRY; 5xx: FAILED, ``bounced`` for 5.1.x when the reply concerns the recipient's mailbox
    (``mailbox``: RCPT or after the data, not MAIL FROM); anything else unexpected: RETRY."""
    text = _reply_text(code, reply)
    if 500 <= code < 600:
        bounced = mailbox and _BAD_MAILBOX.match(text.partition(" ")[2]) is not None
        return SendResult(Outcome.FAILED, code, text, bounced=bounced)
    return SendResult(Outcome.RETRY, code, text)


def _lost(stage: str, exc: BaseException) -> SendResult:
    if stage == "payload":
        reason = (
            "connection lost after the message data was sent, before the server answered: "
            "it may have been delivered; a retry can send a second copy with the same Message-ID"
        )
    else:
        reason = "connection lost before the message was sent"
    return SendResult(Outcome.RETRY, None, f"{reason} ({exc})")


def _envelope_address(address: str) -> str:
    """``address`` as it goes into MAIL FROM / RCPT TO; a non-ASCII domain in its IDNA form.

    :raises ValueError: not a plain ``local@domain`` address, or a non-ASCII local part (that would
        need SMTPUTF8, which is not supported).
    """
    match = _ENVELOPE_ADDRESS.fullmatch(address)
    if match is None or len(address) > 254:
        raise ValueError(f"not a plain ASCII email address: {address!r}")
    if address.isascii():
        return address
    try:
        return f"{match.group(1)}@{match.group(2).encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise ValueError(f"invalid domain in {address!r}: {exc}") from None


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}".strip()


def _quit(conn: _Connection) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()
