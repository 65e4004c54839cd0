"""Rendering, two figures side by side in one run (printed, never asserted):

a. MJML compile time per document: mjml-python (the Rust MRML engine, in-process) against the Node.js
   ``mjml`` package compiling the same MJML in-process in a loop (bench/node/compile.js), for a generated
   20-item newsletter edition per language and for real-world templates in
   ../shared/fixtures/mjml-real/. Target: mjml-python at least 10x faster than Node in-process.
b. Personalised ready-to-send messages per second from one compiled edition: ``MessageTemplate.render``
   against the usual way, an ``email.message.EmailMessage`` built per recipient (headers,
   ``set_content(text)``, ``add_alternative(html, subtype="html")``, ``as_bytes()``), same content.
   Target: >= 10,000 messages/s on one core.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import mjml

from imk_outreach.render.message import MessageTemplate, format_date

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
REAL_TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mjml-real"
PY_WARMUP, PY_ITERATIONS = 5, 50
NODE_WARMUP, NODE_ITERATIONS = 5, 20
OURS_RECIPIENTS, USUAL_RECIPIENTS, ROUNDS = 20_000, 1_000, 3

PLACEHOLDERS = {
    "greeting_name": "IMKPH_GREETING_NAME",
    "unsubscribe_url": "IMKPH_UNSUBSCRIBE_URL",
    "preferences_url": "IMKPH_PREFERENCES_URL",
}
SENDER = ("Cluster IKT, Medien und Kreativwirtschaft", "newsletter@imk.example.org", "info@imk.example.org")
LIST_ID = "newsletter.imk.example.org"

TOPICS = {
    "de": ["KI", "IoT", "Film", "Games", "XR", "FinTech", "Design", "Sicherheit", "VFX", "Musik"],
    "en": ["AI", "IoT", "Film", "Games", "XR", "FinTech", "Design", "Security", "VFX", "Music"],
}
TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "title": "Newsletter Cluster IKT, Medien und Kreativwirtschaft – Dezember 2026",
        "preview": "KI im Mittelstand, Drehstart in Babelsberg und 18 weitere Meldungen aus der Region",
        "hello": "Hallo",
        "intro": "das Jahr endet mit vielen Neuigkeiten aus Berlin-Brandenburg: Förderaufrufe, "
        "Veranstaltungen und Projekte aus Wissenschaft und Wirtschaft. Viel Freude beim Lesen!",
        "more": "Weiterlesen",
        "imprint": "Cluster IKT, Medien und Kreativwirtschaft · Musterstraße 1 · 14467 Potsdam · "
        "Verantwortlich: Erika Mustermann",
        "unsubscribe": "Abmelden",
        "preferences": "Einstellungen ändern",
        "headline": "{topic}: Förderaufruf {n} für Unternehmen in Berlin-Brandenburg",
        "summary": "Das Netzwerk „{topic} Hub“ stellt am {day}. Dezember neue Ergebnisse vor. Partner aus "
        "Wissenschaft und Wirtschaft zeigen Prototypen, die Anmeldung ist bis Freitag möglich – "
        "Teilnahme kostenfrei, Plätze begrenzt (max. 120 €-Zuschuss für Reisekosten).",
    },
    "en": {
        "title": "Newsletter of the ICT, media and creative industries cluster – December 2026",
        "preview": "AI for small firms, shooting starts in Babelsberg and 18 more stories from the region",
        "hello": "Hello",
        "intro": "the year ends with plenty of news from Berlin-Brandenburg: funding calls, events and "
        "projects from research and business. Enjoy reading!",
        "more": "Read more",
        "imprint": "ICT, media and creative industries cluster · Musterstraße 1 · 14467 Potsdam · "
        "Responsible: Erika Mustermann",
        "unsubscribe": "Unsubscribe",
        "preferences": "Change preferences",
        "headline": "{topic}: funding call {n} for companies in Berlin-Brandenburg",
        "summary": "The “{topic} Hub” network presents new results on {day} December. Partners from "
        "research and business show prototypes; registration is open until Friday – free of charge, "
        "seats are limited (up to €120 travel grant).",
    },
}


def sample_items(items: int, language: str) -> list[dict[str, str]]:
    texts = TEXTS[language]
    topics = TOPICS[language]
    return [
        {
            "title": texts["headline"].format(topic=topics[i % len(topics)], n=i + 1),
            "summary": texts["summary"].format(topic=topics[i % len(topics)], day=i % 28 + 1),
            "url": f"https://news.imk.example.org/{language}/2026/12/meldung-{i + 1}",
            "image": f"https://cdn.imk.example.org/img/2026/12/item-{i + 1}.jpg",
            "date": f"{i % 28 + 1:02d}.12.2026" if language == "de" else f"{i % 28 + 1} Dec 2026",
        }
        for i in range(items)
    ]


SECTIONS = {
    "de": ["Innovationsfelder", "Medien & Kreativwirtschaft", "Veranstaltungen", "Förderung"],
    "en": ["Innovation fields", "Media & creative industries", "Events", "Funding"],
}


def _card(item: dict[str, str], more: str) -> str:
    title, summary, url = html.escape(item["title"]), html.escape(item["summary"]), item["url"]
    return f"""
        <mj-image src="{item["image"]}" alt="{title}" href="{url}" width="560px" border-radius="4px" />
        <mj-text font-size="17px" font-weight="700" line-height="22px" color="#0b2a4a"><a href="{url}"
          style="color:#0b2a4a;text-decoration:none">{title}</a><br /><span
          style="font-size:12px;color:#6b7785;font-weight:400">{item["date"]}</span></mj-text>
        <mj-text>{summary}</mj-text>
        <mj-button href="{url}" align="left" background-color="#e2001a" border-radius="3px">{more}</mj-button>
        <mj-divider border-color="#e6e9ee" border-width="1px" padding="16px 25px" />"""


def _sections(items: list[dict[str, str]], language: str) -> str:
    """The cards grouped into the campaign's sections, as a campaign file declares them."""
    headings, more = SECTIONS[language], TEXTS[language]["more"]
    per_section = -(-len(items) // len(headings))
    return "".join(
        f"""
    <mj-section background-color="#ffffff" padding="16px 0">
      <mj-column>
        <mj-text font-size="20px" font-weight="700" color="#e2001a">{html.escape(heading)}</mj-text>"""
        + "".join(_card(item, more) for item in items[n * per_section : (n + 1) * per_section])
        + """
      </mj-column>
    </mj-section>"""
        for n, heading in enumerate(headings)
        if items[n * per_section : (n + 1) * per_section]
    )


def sample_mjml(items: int = 20, language: str = "de") -> str:
    """A realistic newsletter edition in MJML: head, header, intro, ``items`` cards (mj-image, mj-text,
    mj-button) in four sections, footer with mj-social, imprint and per-recipient placeholder tokens.
    A stand-in until the shipped templates/newsletter/default.mjml.j2 is wired in here."""
    texts = TEXTS[language]
    cards = _sections(sample_items(items, language), language)
    greeting = f"{texts['hello']} {PLACEHOLDERS['greeting_name']},"
    return f"""<mjml lang="{language}">
  <mj-head>
    <mj-title>{html.escape(texts["title"])}</mj-title>
    <mj-preview>{html.escape(texts["preview"])}</mj-preview>
    <mj-attributes>
      <mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="22px" color="#1d1d1b" />
      <mj-section padding="0" />
    </mj-attributes>
    <mj-style inline="inline">.footer a {{ color: #6b7785; text-decoration: underline; }}</mj-style>
    <mj-style>@media (max-width:480px) {{ .hide-mobile {{ display: none !important; }} }}</mj-style>
  </mj-head>
  <mj-body background-color="#f2f4f7" width="640px">
    <mj-section background-color="#0b2a4a" padding="20px 0">
      <mj-column width="50%"><mj-image src="https://cdn.imk.example.org/logo-white.png" alt="Cluster IMK"
        width="160px" align="left" href="https://imk.example.org/" /></mj-column>
      <mj-column width="50%" css-class="hide-mobile"><mj-text align="right" color="#ffffff" font-size="13px">
        Newsletter 12/2026</mj-text></mj-column>
    </mj-section>
    <mj-section background-color="#ffffff" padding="24px 0 8px">
      <mj-column>
        <mj-text font-size="24px" font-weight="700" color="#0b2a4a">{html.escape(texts["title"])}</mj-text>
        <mj-text>{greeting}</mj-text>
        <mj-text>{html.escape(texts["intro"])}</mj-text>
        <mj-divider border-color="#e2001a" border-width="2px" width="80px" align="left" />
      </mj-column>
    </mj-section>{cards}
    <mj-section padding="24px 0">
      <mj-column>
        <mj-social font-size="13px" icon-size="24px" mode="horizontal" align="center">
          <mj-social-element name="linkedin" href="https://www.linkedin.com/company/imk-example">LinkedIn
          </mj-social-element>
          <mj-social-element name="instagram" href="https://www.instagram.com/imk_example">Instagram
          </mj-social-element>
          <mj-social-element name="youtube" href="https://www.youtube.com/@imk-example">YouTube</mj-social-element>
        </mj-social>
        <mj-text css-class="footer" align="center" font-size="12px" color="#6b7785">
          {html.escape(texts["imprint"])}<br />
          <a href="{PLACEHOLDERS["unsubscribe_url"]}">{texts["unsubscribe"]}</a> ·
          <a href="{PLACEHOLDERS["preferences_url"]}">{html.escape(texts["preferences"])}</a>
        </mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


def sample_text(items: int = 20, language: str = "de") -> str:
    """The plain-text part of :func:`sample_mjml`'s edition."""
    texts = TEXTS[language]
    blocks = [texts["title"], f"{texts['hello']} {PLACEHOLDERS['greeting_name']},", texts["intro"]]
    blocks += [
        f"{i['title']}\n{i['date']}\n{i['summary']}\n{i['url']}" for i in sample_items(items, language)
    ]
    blocks += [
        texts["imprint"],
        f"{texts['unsubscribe']}: {PLACEHOLDERS['unsubscribe_url']}",
        f"{texts['preferences']}: {PLACEHOLDERS['preferences_url']}",
    ]
    return "\n\n".join(blocks) + "\n"


# -- a. MJML compile ------------------------------------------------------------------------------


def compile_python(source: str) -> tuple[float, float, int]:
    """(median ms, min ms, HTML bytes) of mjml-python compiling ``source``."""
    for _ in range(PY_WARMUP):
        output = mjml.mjml2html(source)
    times = []
    for _ in range(PY_ITERATIONS):
        start = time.perf_counter()
        output = mjml.mjml2html(source)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), len(output.encode())


def node_ready() -> str | None:
    """None when bench/node can run, else why not (``npm install`` runs once when needed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not found"
    if (NODE_DIR / "node_modules" / "mjml").is_dir():
        return None
    print("installing the Node reference (npm install in bench/node) ...")
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"npm install failed: {exc}"
    if done.returncode != 0:
        return f"npm install failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    return None


def compile_node(documents: dict[str, str]) -> tuple[dict[str, Any], str] | str:
    """({name: timings}, "node vX, mjml Y") from bench/node/compile.js, or why it could not run."""
    reason = node_ready()
    if reason is not None:
        return reason
    request = json.dumps({"documents": documents, "iterations": NODE_ITERATIONS, "warmup": NODE_WARMUP})
    try:
        done = subprocess.run(
            ["node", "compile.js"], cwd=NODE_DIR, input=request, capture_output=True, text=True, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"node compile.js failed: {exc}"
    if done.returncode != 0:
        return f"node compile.js failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    answer = json.loads(done.stdout)
    return answer["results"], f"Node {answer['node']}, mjml {answer['mjml']}"


def real_templates() -> dict[str, str]:
    if not REAL_TEMPLATES.is_dir():
        print(f"(real templates skipped: {REAL_TEMPLATES} not found)")
        return {}
    # text mode turns CRLF into LF, which mjml-python needs inside <mj-head>
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(REAL_TEMPLATES.glob("*.mjml"))}


def bench_compile() -> None:
    documents = {f"generated 20 items ({lang})": sample_mjml(20, lang) for lang in ("de", "en")}
    documents.update(real_templates())
    print(
        f"== a. MJML compile, in-process, per compile: mjml-python median of {PY_ITERATIONS} vs "
        f"Node mjml median of {NODE_ITERATIONS} (after warm-up) =="
    )
    node = compile_node(documents)
    if isinstance(node, str):
        print(f"(Node column skipped: {node})")
        node_results: dict[str, Any] = {}
    else:
        node_results, versions = node
        print(f"reference: {versions}")
    print(f"{'document':28} {'py KB':>6} {'mjml-python ms':>15} {'node KB':>8} {'Node ms':>9} {'Node/py':>8}")
    ratios = []
    for name, source in documents.items():
        median, _, size = compile_python(source)
        line = f"{name:28} {size / 1024:6.1f} {median:15.3f}"
        if name in node_results:
            reference = node_results[name]
            ratios.append(reference["ms_median"] / median)
            line += f" {reference['html_bytes'] / 1024:8.1f} {reference['ms_median']:9.2f} {ratios[-1]:7.1f}x"
        print(line)
    if ratios:
        geo = statistics.geometric_mean(ratios)
        print(f"mjml-python is {geo:.1f}x faster than Node in-process (geometric mean; target >= 10x)")


# -- b. personalised messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    message_id: str
    unsubscribe_url: str
    preferences_url: str


def recipients(count: int) -> list[Recipient]:
    first = ["Jörg", "Anna", "Łukasz", "Ayşe", "Sören", "Marie-Luise", "Tim", "Özlem", "Björn", "Clara"]
    last = ["Müller", "Schmidt", "Weiß", "Nowak", "Yılmaz", "Große", "Kühn", "Lehmann", "Öztürk", "Baß"]
    return [
        Recipient(
            email=f"person{i}@example{i % 7}.de",
            name=f"{first[i % 10]} {last[(i // 10) % 10]}",
            message_id=f"<outbox-{i}.edition-42@imk.example.org>",
            unsubscribe_url=f"https://imk.example.org/u/{i}.Zm9vYmFy{i:08x}.sig-{i * 7919 % 100003:05d}",
            preferences_url=f"https://imk.example.org/p/{i}.Zm9vYmFy{i:08x}",
        )
        for i in range(count)
    ]


def values_of(person: Recipient) -> dict[str, str]:
    return {"greeting_name": person.name, "preferences_url": person.preferences_url}


def render_ours(template: MessageTemplate, people: list[Recipient], date: str) -> tuple[float, int]:
    start, size = time.perf_counter(), 0
    for person in people:
        size += len(
            template.render(
                to_email=person.email,
                to_name=person.name,
                message_id=person.message_id,
                date=date,
                values=values_of(person),
                unsubscribe_url=person.unsubscribe_url,
            )
        )
    return time.perf_counter() - start, size


def fill(content: str, person: Recipient, escape: Callable[[str], str]) -> str:
    values = {**values_of(person), "unsubscribe_url": person.unsubscribe_url}
    for name, token in PLACEHOLDERS.items():
        content = content.replace(token, escape(values[name]))
    return content


def usual_message(compiled: str, text: str, subject: str, person: Recipient, date: str) -> bytes:
    message = EmailMessage()
    message["From"] = Address(SENDER[0], addr_spec=SENDER[1])
    message["To"] = Address(person.name, addr_spec=person.email)
    message["Subject"] = subject
    message["Date"] = date
    message["Message-ID"] = person.message_id
    message["Reply-To"] = SENDER[2]
    message["Content-Language"] = "de"
    message["List-Id"] = f"<{LIST_ID}>"
    message["List-Unsubscribe"] = f"<{person.unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(fill(text, person, str))
    message.add_alternative(fill(compiled, person, html.escape), subtype="html")
    return message.as_bytes(policy=email.policy.SMTP)


def render_usual(
    compiled: str, text: str, subject: str, people: list[Recipient], date: str
) -> tuple[float, int]:
    start, size = time.perf_counter(), 0
    for person in people:
        size += len(usual_message(compiled, text, subject, person, date))
    return time.perf_counter() - start, size


def same_content(ours: bytes, usual: bytes) -> bool:
    def decoded(data: bytes) -> list[str]:
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parts = [part.get_content() for part in message.iter_parts() if isinstance(part, EmailMessage)]
        return [str(part).replace("\r\n", "\n").rstrip("\n") for part in parts]

    return decoded(ours) == decoded(usual)


def build_template(compiled: str, text: str, subject: str) -> tuple[MessageTemplate, float]:
    start = time.perf_counter()
    template = MessageTemplate.build(
        html=compiled,
        text=text,
        subject=subject,
        from_name=SENDER[0],
        from_email=SENDER[1],
        reply_to=SENDER[2],
        list_id=LIST_ID,
        language="de",
        placeholders=PLACEHOLDERS,
    )
    return template, (time.perf_counter() - start) * 1000


def bench_messages(items: int, people: list[Recipient]) -> None:
    """One edition of ``items`` items (10 compile to ~40 KB of HTML, 20 to ~70 KB)."""
    subject = f"Der Blick nach vorne – Dezember 2026: KI, Film & {items - 2} weitere Meldungen"
    compiled, text = mjml.mjml2html(sample_mjml(items, "de")), sample_text(items, "de")
    template, build_ms = build_template(compiled, text, subject)
    date = format_date(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    print(
        f"-- edition of {items} items: {len(compiled.encode()) / 1024:.1f} KB HTML + "
        f"{len(text.encode()) / 1024:.1f} KB text; MessageTemplate.build once: {build_ms:.2f} ms"
    )
    ours = [render_ours(template, people, date) for _ in range(ROUNDS)]
    usual = [render_usual(compiled, text, subject, people[:USUAL_RECIPIENTS], date) for _ in range(ROUNDS)]
    ours_rate = OURS_RECIPIENTS / min(t for t, _ in ours)
    usual_rate = USUAL_RECIPIENTS / min(t for t, _ in usual)
    first = people[0]
    ours_first = template.render(
        to_email=first.email,
        to_name=first.name,
        message_id=first.message_id,
        date=date,
        values=values_of(first),
        unsubscribe_url=first.unsubscribe_url,
    )
    check = same_content(ours_first, usual_message(compiled, text, subject, first, date))
    print(
        f"MessageTemplate.render, {OURS_RECIPIENTS:,} recipients: {ours_rate:9,.0f} messages/s"
        f"  ({ours[0][1] / OURS_RECIPIENTS / 1024:.1f} KB each; target >= 10,000/s)"
    )
    print(
        f"EmailMessage per recipient, {USUAL_RECIPIENTS:,} recipients: {usual_rate:6,.0f} messages/s"
        f"  ({usual[0][1] / USUAL_RECIPIENTS / 1024:.1f} KB each)"
    )
    print(f"ratio MessageTemplate/EmailMessage: {ours_rate / usual_rate:.0f}x; same decoded parts: {check}")


def main() -> None:
    bench_compile()
    print()
    print(f"== b. personalised ready-to-send messages per second, one core, best of {ROUNDS} ==")
    people = recipients(OURS_RECIPIENTS)
    for items in (10, 20):
        bench_messages(items, people)


if __name__ == "__main__":
    main()
