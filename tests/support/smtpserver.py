"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests, with scripted answers and fault injection.

::

    with SmtpTestServer(security="starttls", auth=True) as server:
        server.respond("nobody@*", "550 5.1.1 no such user")            # always
        server.respond("busy@example.org", "451 4.3.0 try later", times=2)  # then accepted
        server.drop_after_data(1)          # the next message is read, then the connection cut unanswered
        ... send to server.host, server.port (client TLS context: server.client_tls_context()) ...
        assert server.messages[0].data == sent_bytes
        server.stop(); ...; server.start()  # away for a while (refusing connections), back on the same port
        server.wait_all_closed()            # no client connection left open

Every accepted message is recorded as a :class:`Received` (envelope, exact bytes, authenticated user,
connection number, TLS or not); every connection as a :class:`Connection` (EHLO seen, QUIT seen, closed).
The pytest fixtures ``smtp_server`` and ``smtp_server_factory`` at the bottom stop every server they
started and fail a test that left a client connection open. Register them in a conftest.py with
``from tests.support.smtpserver import smtp_server, smtp_server_factory  # noqa: F401``.

TLS uses a throw-away CA and a server certificate for ``localhost`` and ``127.0.0.1`` made with the
``cryptography`` package once per test process. AUTH (PLAIN, LOGIN) accepts only
:data:`USER` / :data:`PASSWORD`; with ``starttls`` it is offered only after STARTTLS, as real servers do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import functools
import ipaddress
import itertools
import logging
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "PASSWORD",
    "USER",
    "Connection",
    "Received",
    "SmtpTestServer",
    "TlsFiles",
    "smtp_server",
    "smtp_server_factory",
    "test_tls_files",
]

# aiosmtpd warns on every AUTH (Session.login_data deprecated) and on AUTH without STARTTLS; errors stay
logging.getLogger("mail.log").setLevel(logging.ERROR)

USER = "mailer"
PASSWORD = "s3cret-test-password"
Security = Literal["none", "starttls", "tls"]
Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class Received:
    """One message the server accepted (answered 250 to)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly the bytes between DATA and the final ".", dot-stuffing removed
    user: str | None  # the authenticated user, if any
    connection: int  # Connection.number of the connection it came on
    tls: bool
    queue_id: str


@dataclass
class Connection:
    """One TCP connection to the server (the controller's own start-up probe included)."""

    number: int
    ehlo: int = 0  # EHLO/HELO commands seen (a STARTTLS session sends two)
    quit: bool = False
    closed: bool = False
    rsets: int = 0


@dataclass
class _Rule:
    pattern: str
    reply: str
    stage: Stage
    times: int | None  # answers left; None = forever

    def matches(self, address: str, stage: str) -> bool:
        if self.stage != stage or self.times == 0:
            return False
        return fnmatch.fnmatchcase(address.lower(), self.pattern.lower())


# -- TLS material ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against the test CA, host name checking on (the certificate names
        ``localhost`` and ``127.0.0.1``)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


@functools.cache
def test_tls_files() -> TlsFiles:
    """A CA and a server certificate signed by it, written once per process to a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="imk-smtp-tls-"))
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imk-outreach test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, key.public_key(), now
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Wide on purpose: OpenSSL checks it against the real clock, also when the suite runs on a moved
        # one (IMK_TEST_CLOCK_SHIFT, years either way).
        .not_valid_before(now - dt.timedelta(days=3650))
        .not_valid_after(now + dt.timedelta(days=3650))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# -- the server --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpTestServer:
    """An aiosmtpd server in a background thread; see the module docstring.

    :param security: ``none``; ``starttls`` (offered, not required); ``tls`` (implicit TLS).
    :param auth: offer AUTH PLAIN/LOGIN and require it before MAIL.
    :param port: a fixed port; default a free one (kept across :meth:`stop` / :meth:`start`).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        security: Security = "none",
        auth: bool = False,
        port: int | None = None,
        pipelining: bool = True,
    ) -> None:
        self.security = security
        self.pipelining = pipelining  # offer RFC 2920 PIPELINING in EHLO, as Postfix and most servers do
        self.auth = auth
        self.port = port or free_port()
        self.messages: list[Received] = []
        self.dropped: list[Received] = []  # read completely, then the connection was cut unanswered
        self.refused: list[tuple[str, str]] = []  # (address, reply) answered by a rule
        self.connections: list[Connection] = []
        self._rules: list[_Rule] = []
        self._drops = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._live: dict[int, _TrackingSMTP] = {}
        self._controller: _Controller | None = None

    # -- scripting ---------------------------------------------------------------------------------

    def respond(self, pattern: str, reply: str, *, times: int | None = None, stage: Stage = "rcpt") -> None:
        """Answer ``reply`` (e.g. ``"451 4.3.0 try later"``) for recipients matching ``pattern`` (an
        address or a case-insensitive glob) at RCPT or at the end of DATA, or for a sender at MAIL;
        ``times`` answers, then the address is accepted again (None: always)."""
        with self._lock:
            self._rules.append(_Rule(pattern, reply, stage, times))

    def drop_after_data(self, count: int = 1) -> None:
        """For the next ``count`` messages: read the whole message, then cut the connection without
        answering (the client cannot know whether it was accepted)."""
        with self._lock:
            self._drops += count

    # -- what happened -----------------------------------------------------------------------------

    def sessions(self) -> list[Connection]:
        """Client connections: those that said EHLO or HELO (the start-up probe does not)."""
        with self._lock:
            return [c for c in self.connections if c.ehlo]

    def open_connections(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if not c.closed]

    def recipients(self) -> list[str]:
        with self._lock:
            return [rcpt for message in self.messages for rcpt in message.rcpt_tos]

    def wait_all_closed(self, timeout: float = 5.0) -> bool:
        """True once every connection is closed (the server noticed the client's QUIT or close)."""
        deadline = time.monotonic() + timeout
        while self.open_connections():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    @property
    def running(self) -> bool:
        return self._controller is not None

    def client_tls_context(self) -> ssl.SSLContext:
        return test_tls_files().client_context()

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> SmtpTestServer:
        """Listen (again) on the same port."""
        if self._controller is not None:
            return self
        tls = test_tls_files() if self.security != "none" else None
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": "localhost",
            "ready_timeout": 10.0,
        }
        smtp_kwargs: dict[str, Any] = {}
        if self.security == "tls":
            assert tls is not None
            kwargs["ssl_context"] = tls.server_context()
        elif self.security == "starttls":
            assert tls is not None
            smtp_kwargs["tls_context"] = tls.server_context()
        if self.auth:
            smtp_kwargs.update(
                authenticator=_authenticate,
                auth_required=True,
                # aiosmtpd's check only knows STARTTLS; with implicit TLS the whole connection is TLS
                auth_require_tls=self.security == "starttls",
            )
        controller = _Controller(self, _Handler(self), **kwargs, **smtp_kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Go away: cut every open connection (as a crashed server would) and stop listening, so
        connections are refused until :meth:`start`."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._cut_all(), controller.loop)
        future.result(timeout=10)
        controller.stop()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _cut_all(self) -> None:
        with self._lock:
            live = list(self._live.values())
        for protocol in live:
            protocol.cut()
        for _ in range(500):
            with self._lock:
                if not self._live:
                    return
            await asyncio.sleep(0.01)

    # -- called from the server thread -------------------------------------------------------------

    def _opened(self, protocol: _TrackingSMTP) -> Connection:
        with self._lock:
            connection = Connection(next(self._numbers))
            self.connections.append(connection)
            self._live[connection.number] = protocol
            return connection

    def _closed(self, connection: Connection) -> None:
        with self._lock:
            connection.closed = True
            self._live.pop(connection.number, None)

    def _rule_reply(self, addresses: list[str], stage: str) -> str | None:
        with self._lock:
            for address in addresses:
                for rule in self._rules:
                    if rule.matches(address, stage):
                        if rule.times is not None:
                            rule.times -= 1
                        self.refused.append((address, rule.reply))
                        return rule.reply
        return None

    def _take_drop(self) -> bool:
        with self._lock:
            if self._drops > 0:
                self._drops -= 1
                return True
            return False

    def _record(self, received: Received, *, dropped: bool = False) -> None:
        with self._lock:
            (self.dropped if dropped else self.messages).append(received)


class _TrackingSMTP(SMTP):
    """aiosmtpd's SMTP protocol, telling the server object when a connection opens and closes."""

    def __init__(self, server: SmtpTestServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.test_server = server
        self.connection: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrade = self._original_transport is not None  # STARTTLS: same connection, now encrypted
        super().connection_made(transport)
        if not upgrade:
            self.connection = self.test_server._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if self.connection is not None:
            self.test_server._closed(self.connection)

    def cut(self) -> None:
        """Abort the TCP connection (no QUIT, no TLS close_notify)."""
        transport = self._original_transport or self.transport
        if transport is not None:
            transport.abort()  # type: ignore[attr-defined]


class _Controller(Controller):
    def __init__(self, server: SmtpTestServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.test_server = server

    def factory(self) -> SMTP:
        with warnings.catch_warnings():  # "AUTH without requiring TLS": implicit TLS or a plain test
            warnings.simplefilter("ignore", UserWarning)
            return _TrackingSMTP(self.test_server, self.handler, **self.SMTP_kwargs)


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    user, password = auth_data.login.decode(), auth_data.password.decode()
    ok = user == USER and password == PASSWORD
    return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


class _Handler:
    """aiosmtpd handler hooks; every answer comes from the scripted rules or is an acceptance."""

    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server
        self.queue_ids = itertools.count(1)

    async def handle_EHLO(
        self, server: _TrackingSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if server.connection is not None:
            server.connection.ehlo += 1
        if server.test_server.pipelining:  # aiosmtpd reads commands one by one, so it pipelines fine
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_HELO(
        self, server: _TrackingSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        if server.connection is not None:
            server.connection.ehlo += 1
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: _TrackingSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server._rule_reply([address], "mail")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: _TrackingSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server._rule_reply([address], "rcpt")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_RSET(self, server: _TrackingSMTP, session: Session, envelope: Envelope) -> str:
        if server.connection is not None:
            server.connection.rsets += 1
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: _TrackingSMTP, session: Session, envelope: Envelope) -> str:
        if server.connection is not None:
            server.connection.quit = True
        return "221 2.0.0 Bye"

    async def handle_DATA(self, server: _TrackingSMTP, session: Session, envelope: Envelope) -> str:
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            user=session.auth_data if session.authenticated else None,
            connection=server.connection.number if server.connection else 0,
            tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
            queue_id=f"Q{next(self.queue_ids):05d}",
        )
        if self.server._take_drop():
            self.server._record(received, dropped=True)
            server.cut()
            await asyncio.sleep(3600)  # connection_lost() cancels this coroutine: no answer is sent
        reply = self.server._rule_reply(list(envelope.rcpt_tos), "data")
        if reply is not None:
            return reply
        self.server._record(received)
        return f"250 2.0.0 Ok: queued as {received.queue_id}"


# -- pytest fixtures -------------------------------------------------------------------------------


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpTestServer]]:
    """``make(security=..., auth=...)`` starts a server; all are stopped after the test, which fails if a
    client connection was left open."""
    servers: list[SmtpTestServer] = []

    def make(**kwargs: Any) -> SmtpTestServer:
        server = SmtpTestServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    leaked = [repr(c) for s in servers if s.running and not s.wait_all_closed() for c in s.open_connections()]
    for server in servers:
        server.stop()
    if leaked:
        pytest.fail(f"SMTP connections left open by the test: {', '.join(leaked)}")


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """A plain SMTP server without AUTH."""
    return smtp_server_factory()
