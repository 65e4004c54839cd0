"""The mail server as configured: SMTP options for the publishers and the sender's domain. Shared by
delivery (dispatch) and confirmation mails (subscriptions)."""

from __future__ import annotations

from imk_outreach.config import Settings, reveal
from imk_outreach.errors import ImkError
from imk_outreach.publishers.smtp import SmtpOptions


class DkimKeyError(ImkError):
    """``smtp.dkim.key_file`` cannot be read."""

    def __init__(self, path: str, reason: str, config: str) -> None:
        self.path = path
        super().__init__(f"smtp.dkim.key_file: cannot read {path}: {reason} ({config})")


def sender_domain(settings: Settings) -> str:
    """The domain of the sender address (Message-IDs, List-Id, the default DKIM domain)."""
    return settings.sender.email.rpartition("@")[2].lower() or "localhost"


def smtp_options(settings: Settings) -> SmtpOptions:
    """``settings.smtp`` as the SMTP publisher's options: the login's ``${ENV}`` variables looked up and
    the DKIM key file read now.

    :raises MissingVariableError: ``smtp.username`` or ``smtp.password`` names an unset variable.
    :raises DkimKeyError: the DKIM key file cannot be read.
    """
    smtp = settings.smtp
    return SmtpOptions(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        username=reveal(smtp.username),
        password=reveal(smtp.password),
        timeout=smtp.timeout,
        connections=smtp.connections,
        rate_per_second=smtp.rate_per_second,
        dkim_key=_dkim_key(settings),
        dkim_selector=smtp.dkim.selector if smtp.dkim else None,
        dkim_domain=(smtp.dkim.domain or sender_domain(settings)) if smtp.dkim else None,
    )


def require_smtp(settings: Settings) -> None:
    """Fail now, before anything is queued or claimed, when mail could not go out for want of a
    configured secret or key file (``send`` and ``deliver`` call it first).

    :raises MissingVariableError: the SMTP login names an unset variable.
    :raises DkimKeyError: the DKIM key file cannot be read.
    """
    smtp_options(settings)


def _dkim_key(settings: Settings) -> bytes | None:
    dkim = settings.smtp.dkim
    if dkim is None:
        return None
    path = settings.resolve_path(dkim.key_file)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(str(path), exc.strerror or str(exc), str(settings.config_path)) from exc
