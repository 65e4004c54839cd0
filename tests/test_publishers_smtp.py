"""SmtpSender against a real aiosmtpd server: pooling, outcomes, faults, TLS, AUTH, rate limit, DKIM.

No mocks: every test talks SMTP over a socket to ``tests.support.smtpserver``. The server fixtures fail
a test that leaves a client connection open.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.util import parse_tag_value

from imk_outreach.publishers import (
    Outcome,
    Publisher,
    PublishError,
    SendResult,
    get_publisher_factory,
    known_types,
    register,
)
from imk_outreach.publishers.base import ENTRY_POINT_GROUP
from imk_outreach.publishers.smtp import DKIM_HEADERS, SmtpOptions, SmtpSender
from imk_outreach.publishers.smtp_async import AsyncSmtpSender
from imk_outreach.render.message import MessageTemplate, format_date
from tests.support import smtpserver
from tests.support.smtpserver import PASSWORD, USER, SmtpTestServer

# the shared fixtures (a conftest.py may register them for every module instead)
smtp_server = smtpserver.smtp_server
smtp_server_factory = smtpserver.smtp_server_factory

SENDER = "bounces@imk.example.org"
TEMPLATE = MessageTemplate.build(
    html='<html lang="de"><body><p>Hallo IMKPH_NAME,</p><p>Grüße aus Potsdam.</p>'
    '<a href="IMKPH_UNSUBSCRIBE">Abmelden</a></body></html>',
    text="Hallo IMKPH_NAME,\n\nGrüße aus Potsdam.\n.\n..Punkte am Zeilenanfang\n\n"
    "Abmelden: IMKPH_UNSUBSCRIBE\n",
    subject="Der Blick nach vorne – Dezember",
    from_name="Cluster IMK",
    from_email="newsletter@imk.example.org",
    reply_to=None,
    list_id="newsletter.imk.example.org",
    list_name="Newsletter",
    language="de",
    placeholders={"name": "IMKPH_NAME", "unsubscribe_url": "IMKPH_UNSUBSCRIBE"},
)
DATE = format_date(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))

SenderFactory = Callable[..., SmtpSender]


def message(to: str, number: int = 1) -> bytes:
    return TEMPLATE.render(
        to_email=to,
        to_name="Erika Muster",
        message_id=f"<outbox-{number}@imk.example.org>",
        date=DATE,
        values={"name": "Erika"},
        unsubscribe_url=f"https://imk.example.org/u/{number}?s=sig",
    )


@pytest.fixture(params=[SmtpSender, AsyncSmtpSender], ids=["threads", "asyncio"])
def make_sender(
    request: pytest.FixtureRequest, smtp_server_factory: Callable[..., SmtpTestServer]
) -> Iterator[SenderFactory]:
    """``make_sender(server, **options)``; every sender is closed before the servers check for leaks
    (this fixture depends on the server factory, so it is torn down first). Every test using it runs
    against both implementations: they must behave alike."""
    made: list[Any] = []
    kind = request.param

    def make(server: SmtpTestServer, **options: Any) -> SmtpSender:
        options.setdefault("helo", "test.imk.example.org")
        options.setdefault("timeout", 5.0)
        sender = kind(SmtpOptions(host=server.host, port=server.port, **options))
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def send(sender: SmtpSender, to: str, number: int = 1) -> SendResult:
    return sender.send(SENDER, to, message(to, number))


# -- delivery and pooling --------------------------------------------------------------------------


def test_plain_send_delivers_the_bytes_unchanged(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server)
    data = message("erika@example.org")

    result = sender.send(SENDER, "erika@example.org", data)

    assert result.outcome is Outcome.SENT
    assert result.code == 250
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as Q\d+", result.reply)
    assert not result.bounced
    [received] = smtp_server.messages
    assert received.data == data  # including the lines starting with "." (dot-stuffing undone)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ("erika@example.org",)
    assert not received.tls and received.user is None


def test_connections_are_reused(smtp_server: SmtpTestServer, make_sender: SenderFactory) -> None:
    sender = make_sender(smtp_server, connections=4)

    results = [send(sender, f"user{n}@example.org", n) for n in range(10)]

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(smtp_server.messages) == 10
    assert len(smtp_server.sessions()) == 1  # one thread: one connection, ten transactions


def test_parallel_threads_deliver_each_message_exactly_once(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server, connections=4)
    barrier = threading.Barrier(4)

    def worker(thread: int) -> list[SendResult]:
        barrier.wait()
        return [send(sender, f"t{thread}-m{n}@example.org", thread * 100 + n) for n in range(50)]

    with ThreadPoolExecutor(4) as pool:
        results = [r for chunk in pool.map(worker, range(4)) for r in chunk]

    assert Counter(r.outcome for r in results) == {Outcome.SENT: 200}
    expected = {f"t{t}-m{n}@example.org" for t in range(4) for n in range(50)}
    assert Counter(smtp_server.recipients()) == Counter(expected)  # every one, exactly once
    assert len({m.queue_id for m in smtp_server.messages}) == 200
    assert 1 <= len(smtp_server.sessions()) <= 4


def test_close_quits_every_connection(smtp_server: SmtpTestServer, make_sender: SenderFactory) -> None:
    sender = make_sender(smtp_server, connections=3)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: send(sender, f"u{n}@example.org", n), range(30)))

    sender.close()

    assert smtp_server.wait_all_closed()
    assert all(c.quit for c in smtp_server.sessions())
    with pytest.raises(RuntimeError, match="closed"):
        send(sender, "late@example.org")


def test_context_manager_closes(smtp_server: SmtpTestServer) -> None:
    with SmtpSender(
        SmtpOptions(host=smtp_server.host, port=smtp_server.port, helo="t.example.org")
    ) as sender:
        assert send(sender, "a@example.org").outcome is Outcome.SENT
    assert smtp_server.wait_all_closed()
    assert [c.quit for c in smtp_server.sessions()] == [True]


# -- outcomes --------------------------------------------------------------------------------------


def test_4xx_is_retry_and_a_later_attempt_is_accepted(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    smtp_server.respond("busy@example.org", "451 4.3.0 try later", times=2)
    sender = make_sender(smtp_server)

    first, second, third = (send(sender, "busy@example.org") for _ in range(3))

    assert (first.outcome, first.code, first.reply) == (Outcome.RETRY, 451, "451 4.3.0 try later")
    assert second.outcome is Outcome.RETRY and not second.bounced
    assert third.outcome is Outcome.SENT
    assert smtp_server.recipients() == ["busy@example.org"]
    [session] = smtp_server.sessions()  # the refused transactions did not cost the connection
    assert session.rsets >= 2  # each failed transaction was reset before the next one


def test_4xx_after_the_data_is_retry(smtp_server: SmtpTestServer, make_sender: SenderFactory) -> None:
    smtp_server.respond("full@example.org", "452 4.2.2 mailbox full", stage="data", times=1)
    sender = make_sender(smtp_server)

    assert send(sender, "full@example.org").outcome is Outcome.RETRY
    assert send(sender, "other@example.org").outcome is Outcome.SENT  # same connection, clean state
    assert send(sender, "full@example.org").outcome is Outcome.SENT
    assert smtp_server.recipients() == ["other@example.org", "full@example.org"]
    assert len(smtp_server.sessions()) == 1


@pytest.mark.parametrize(
    ("reply", "stage", "bounced"),
    [
        ("550 5.1.1 no such user", "rcpt", True),
        ("550 5.1.10 recipient address rejected: null MX", "rcpt", True),
        ("550 5.7.1 message rejected as spam", "rcpt", False),
        ("554 5.7.1 content rejected", "data", False),
        ("550 5.1.1 mailbox unavailable", "data", True),
        ("550 mailbox unavailable", "rcpt", False),  # no enhanced code: failed, but not known to be bad
    ],
)
def test_5xx_is_failed_and_5_1_x_is_a_bounce(
    smtp_server: SmtpTestServer, make_sender: SenderFactory, reply: str, stage: Any, bounced: bool
) -> None:
    smtp_server.respond("gone@example.org", reply, stage=stage)
    sender = make_sender(smtp_server)

    result = send(sender, "gone@example.org")

    assert result == SendResult(Outcome.FAILED, int(reply[:3]), reply, bounced=bounced)
    assert send(sender, "here@example.org").outcome is Outcome.SENT
    assert smtp_server.recipients() == ["here@example.org"]


def test_refused_sender_is_failed_but_not_a_bounce(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    smtp_server.respond(SENDER, "553 5.1.8 sender domain does not exist", stage="mail", times=1)
    sender = make_sender(smtp_server)

    result = send(sender, "erika@example.org")

    assert (result.outcome, result.code, result.bounced) == (Outcome.FAILED, 553, False)
    assert send(sender, "erika@example.org").outcome is Outcome.SENT


@pytest.mark.parametrize(
    "recipient",
    ["x@example.org\r\nRCPT TO:<y@example.org>", "x@example.org>\nDATA", '"x y"@example.org', "ü@x.org"],
)
def test_unsendable_address_fails_before_anything_is_sent(
    smtp_server: SmtpTestServer, make_sender: SenderFactory, recipient: str
) -> None:
    sender = make_sender(smtp_server)

    result = sender.send(SENDER, recipient, message("x@example.org"))

    assert (result.outcome, result.code) == (Outcome.FAILED, None)
    assert "not a plain ASCII email address" in result.reply
    assert send(sender, "ok@example.org").outcome is Outcome.SENT
    assert smtp_server.recipients() == ["ok@example.org"]  # no command injection reached the server


def test_non_ascii_domain_is_sent_in_idna_form(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server)

    assert (
        sender.send(SENDER, "erika@bücher.example", message("erika@bücher.example")).outcome is Outcome.SENT
    )
    assert smtp_server.recipients() == ["erika@xn--bcher-kva.example"]


# -- faults ----------------------------------------------------------------------------------------


def test_connection_dropped_after_data_is_retry_and_the_next_send_reconnects(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    smtp_server.drop_after_data(1)
    sender = make_sender(smtp_server)

    lost = send(sender, "erika@example.org", 7)
    again = send(sender, "erika@example.org", 7)

    assert (lost.outcome, lost.code) == (Outcome.RETRY, None)
    assert "after the message data was sent" in lost.reply and "Message-ID" in lost.reply
    assert len(smtp_server.dropped) == 1  # the server had read it all: the outcome was unknown
    assert again.outcome is Outcome.SENT
    assert [m.data for m in smtp_server.messages] == [message("erika@example.org", 7)]
    assert len(smtp_server.sessions()) == 2


def test_server_away_is_retry_and_sending_resumes_when_it_is_back(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server)
    assert send(sender, "a@example.org").outcome is Outcome.SENT

    smtp_server.stop()  # cuts the pooled connection and refuses new ones
    away = send(sender, "b@example.org")
    smtp_server.start()
    back = send(sender, "b@example.org")

    assert (away.outcome, away.code) == (Outcome.RETRY, None)
    assert "cannot connect" in away.reply
    assert back.outcome is Outcome.SENT
    assert smtp_server.recipients() == ["a@example.org", "b@example.org"]


def test_refused_connection_is_retry_before_the_server_ever_ran(make_sender: SenderFactory) -> None:
    server = SmtpTestServer()  # never started: nothing listens on its port
    sender = make_sender(server)

    result = send(sender, "a@example.org")

    assert (result.outcome, result.code) == (Outcome.RETRY, None)
    assert f"{server.host}:{server.port}" in result.reply


def test_stale_pooled_connection_is_replaced_without_a_retry(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server)
    assert send(sender, "a@example.org").outcome is Outcome.SENT

    smtp_server.stop()  # the idle pooled connection dies while nobody sends
    smtp_server.start()
    result = send(sender, "b@example.org")

    assert result.outcome is Outcome.SENT  # nothing had been sent on the dead one: safe to repeat
    assert smtp_server.recipients() == ["a@example.org", "b@example.org"]


def test_server_closing_an_idle_connection_with_421_is_replaced(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server)
    assert send(sender, "a@example.org").outcome is Outcome.SENT
    smtp_server.respond(SENDER, "421 4.4.2 idle timeout, closing", stage="mail", times=1)

    result = send(sender, "b@example.org")

    assert result.outcome is Outcome.SENT
    assert len(smtp_server.sessions()) == 2


# -- TLS and AUTH ----------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_login_delivers(
    smtp_server_factory: Callable[..., SmtpTestServer], make_sender: SenderFactory, security: Any
) -> None:
    server = smtp_server_factory(security=security, auth=True)
    sender = make_sender(
        server, security=security, username=USER, password=PASSWORD, tls_context=server.client_tls_context()
    )

    results = [send(sender, f"u{n}@example.org", n) for n in range(3)]

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert {(m.user, m.tls) for m in server.messages} == {(USER, True)}
    assert len(server.sessions()) == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_wrong_password_raises_a_permanent_publish_error(
    smtp_server_factory: Callable[..., SmtpTestServer], make_sender: SenderFactory, security: Any
) -> None:
    server = smtp_server_factory(security=security, auth=True)
    sender = make_sender(
        server, security=security, username=USER, password="wrong", tls_context=server.client_tls_context()
    )

    with pytest.raises(PublishError) as info:
        send(sender, "a@example.org")

    assert info.value.retryable is False
    assert info.value.channel == "email"
    assert USER in str(info.value) and "535" in str(info.value)
    assert "wrong" not in str(info.value)
    assert server.messages == []


def test_untrusted_certificate_raises_a_permanent_publish_error(
    smtp_server_factory: Callable[..., SmtpTestServer], make_sender: SenderFactory
) -> None:
    server = smtp_server_factory(security="tls")
    sender = make_sender(server, security="tls")  # the default context does not know the test CA

    with pytest.raises(PublishError, match="certificate") as info:
        send(sender, "a@example.org")
    assert not info.value.retryable


def test_starttls_not_offered_raises_a_permanent_publish_error(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server, security="starttls")

    with pytest.raises(PublishError, match="STARTTLS") as info:
        send(sender, "a@example.org")
    assert not info.value.retryable


# -- rate limit ------------------------------------------------------------------------------------


def test_rate_limit_is_shared_by_all_connections(
    smtp_server: SmtpTestServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp_server, connections=4, rate_per_second=50)
    started = time.monotonic()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: send(sender, f"r{n}@example.org", n), range(20)))

    elapsed = time.monotonic() - started
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert elapsed >= 19 / 50 * 0.9  # 20 sends start at least 1/50 s apart


# -- DKIM ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _dns_for(key: rsa.RSAPrivateKey, name: bytes) -> Callable[..., bytes | None]:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dnsfunc(query: bytes, timeout: float = 5) -> bytes | None:
        return record if query == name else None

    return dnsfunc


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8]
)
def test_dkim_signature_verifies_and_covers_the_list_headers(
    smtp_server: SmtpTestServer, make_sender: SenderFactory, rsa_key: rsa.RSAPrivateKey, fmt: Any
) -> None:
    sender = make_sender(
        smtp_server, dkim_key=_pem(rsa_key, fmt), dkim_selector="news2026", dkim_domain="imk.example.org"
    )
    data = message("erika@example.org")

    assert sender.send(SENDER, "erika@example.org", data).outcome is Outcome.SENT

    [received] = smtp_server.messages
    header = received.data.removesuffix(data)  # the signature was put in front, nothing else changed
    assert header.startswith(b"DKIM-Signature: ") and header.endswith(b"\r\n") and header != received.data
    dnsfunc = _dns_for(rsa_key, b"news2026._domainkey.imk.example.org.")
    assert dkim.verify(received.data, dnsfunc=dnsfunc)
    tags = parse_tag_value(header.removeprefix(b"DKIM-Signature:"))
    signed = re.sub(rb"\s+", b"", tags[b"h"]).split(b":")
    assert b"list-unsubscribe" in signed and b"list-unsubscribe-post" in signed
    assert [h.lower() for h in signed] == [h.lower().encode() for h in DKIM_HEADERS]
    assert (tags[b"c"], tags[b"d"], tags[b"s"], tags[b"a"]) == (
        b"relaxed/relaxed",
        b"imk.example.org",
        b"news2026",
        b"rsa-sha256",
    )
    tampered = received.data.replace(
        b"List-Unsubscribe: <https://imk.example.org/u/1", b"List-Unsubscribe: <https://evil.example/u/1"
    )
    assert tampered != received.data
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"dkim_key": b"not a key", "dkim_selector": "s", "dkim_domain": "example.org"}, "dkim_key"),
        ({"dkim_key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
          "dkim_selector": "s", "dkim_domain": "example.org"}, "dkim_key"),
        ({"dkim_key": "rsa", "dkim_domain": "example.org"}, "dkim_selector"),
        ({"dkim_key": "ec", "dkim_selector": "s", "dkim_domain": "example.org"}, "RSA"),
        ({"connections": 0}, "connections"),
        ({"rate_per_second": -1}, "rate_per_second"),
        ({"username": "mailer"}, "no password"),
        ({"security": "ssl"}, "security"),
    ],
)  # fmt: skip
def test_unusable_options_raise_at_construction(
    rsa_key: rsa.RSAPrivateKey, options: dict[str, Any], problem: str
) -> None:
    if options.get("dkim_key") == "rsa":
        options["dkim_key"] = _pem(rsa_key, serialization.PrivateFormat.PKCS8)
    if options.get("dkim_key") == "ec":
        options["dkim_key"] = _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)

    with pytest.raises(PublishError, match=problem) as info:
        SmtpSender(SmtpOptions(**options))
    assert not info.value.retryable


# -- protocol, registry, errors --------------------------------------------------------------------


def test_registry_finds_the_builtin_smtp_publisher() -> None:
    assert get_publisher_factory("smtp") is SmtpSender
    assert "smtp" in known_types()


def test_smtp_is_registered_through_the_entry_point_group_like_a_plugin() -> None:
    [entry] = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == "smtp"]
    assert entry.load() is SmtpSender


def test_registry_takes_run_time_registrations_and_names_unknown_types() -> None:
    class Null:
        def send(self, envelope_from: str, recipient: str, data: bytes) -> SendResult:
            return SendResult(Outcome.SENT, None, "dropped")

        def close(self) -> None:
            pass

    register("null-test", Null)
    publisher: Publisher = get_publisher_factory("null-test")()
    assert publisher.send("a", "b", b"").outcome is Outcome.SENT
    with pytest.raises(KeyError, match="no publisher 'nope'.*smtp"):
        get_publisher_factory("nope")


def test_smtp_sender_is_a_publisher(smtp_server: SmtpTestServer, make_sender: SenderFactory) -> None:
    publisher: Publisher = make_sender(smtp_server)
    assert publisher.send(SENDER, "a@example.org", message("a@example.org")).outcome is Outcome.SENT


def test_publish_error_builds_its_message_from_its_fields() -> None:
    error = PublishError("email", "smtp server mx:587 refused login as 'news'", retryable=False)
    assert str(error) == "email: smtp server mx:587 refused login as 'news' (retrying will not help)"
    assert "a later retry may help" in str(PublishError("x-de", "HTTP 503", retryable=True))
    assert [str(outcome) for outcome in Outcome] == ["sent", "retry", "failed", "unknown"]


def test_pipelined_and_classic_sessions_classify_alike(
    smtp_server_factory: Callable[..., SmtpTestServer], make_sender: SenderFactory
) -> None:
    """With PIPELINING offered, MAIL/RCPT/DATA go out in one write; every refusal must still be
    classified as in the one-command-at-a-time session, and the session must stay usable after it."""
    seen = {}
    for pipelining in (True, False):
        server = smtp_server_factory(pipelining=pipelining)
        server.respond("later@*", "451 4.3.0 try later", times=1)
        server.respond("gone@*", "550 5.1.1 no such user")
        server.respond("policy@*", "554 5.7.1 rejected after data", stage="data")
        server.respond("bad-sender@*", "553 5.7.1 sender refused", stage="mail")
        sender = make_sender(server, connections=1)
        outcomes = []
        for to in (
            "ok@example.org",
            "later@example.org",
            "gone@example.org",
            "policy@example.org",
            "later@example.org",
            "ok2@example.org",
        ):
            result = send(sender, to)
            outcomes.append((to, result.outcome, result.code, result.bounced))
        refused_sender = sender.send("bad-sender@example.org", "ok3@example.org", message("ok3@example.org"))
        outcomes.append(("bad-sender", refused_sender.outcome, refused_sender.code, refused_sender.bounced))
        outcomes.append(("after", send(sender, "ok4@example.org").outcome, None, False))
        seen[pipelining] = outcomes
        assert [m.rcpt_tos[0] for m in server.messages] == [
            "ok@example.org",
            "later@example.org",
            "ok2@example.org",
            "ok4@example.org",
        ]
        assert len(server.sessions()) == 1  # every refusal left the one connection usable
        sender.close()
    assert seen[True] == seen[False]
    assert [o[1] for o in seen[True]] == [
        Outcome.SENT,
        Outcome.RETRY,
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.SENT,
        Outcome.SENT,
        Outcome.FAILED,
        Outcome.SENT,
    ]
