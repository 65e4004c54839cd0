"""The mail server as configured: SMTP options for the publishers and the sender's domain. Shared by
delivery (dispatch) and confirmation mails (subscriptions)."""

from __future__ import annotations

from imk_outreach.config import Settings
from imk_outreach.publishers.smtp import SmtpOptions


def sender_domain(settings: Settings) -> str:
    """The domain of the sender address (Message-IDs, List-Id, the default DKIM domain)."""
    return settings.sender.email.rpartition("@")[2].lower() or "localhost"


def smtp_options(settings: Settings) -> SmtpOptions:
    """``settings.smtp`` as the SMTP publisher's options (the DKIM key file read here)."""
    smtp = settings.smtp
    dkim_key = settings.resolve_path(smtp.dkim.key_file).read_bytes() if smtp.dkim else None
    return SmtpOptions(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        username=smtp.username,
        password=smtp.password,
        timeout=smtp.timeout,
        connections=smtp.connections,
        rate_per_second=smtp.rate_per_second,
        dkim_key=dkim_key,
        dkim_selector=smtp.dkim.selector if smtp.dkim else None,
        dkim_domain=(smtp.dkim.domain or sender_domain(settings)) if smtp.dkim else None,
    )
