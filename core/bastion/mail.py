"""Outgoing mail (password resets, invitations) through the operator's SMTP server.

Nothing leaves the server unless an operator set ``smtp_host``. Messages carry
single-use links, so the body is never logged: only the recipient's domain and the
subject are.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from bastion.config import Settings
from bastion.runtime import platform

log = logging.getLogger("bastion.mail")
TIMEOUT_SECONDS = 10


class MailError(RuntimeError):
    """A message could not be sent; the message says why and what to check."""


def send_mail(to: str, subject: str, body: str, *, settings: Settings | None = None) -> None:
    """Send a plain-text message, or raise MailError.

    ``settings`` defaults to the running application's.
    """
    settings = settings or platform().settings
    if not settings.mail_enabled:
        raise MailError(
            "Mail is not configured: set smtp_host, mail_from and public_url to send email."
        )
    domain = to.rpartition("@")[2] or "?"
    try:
        message = _build(settings, to, subject, body)
    except (ValueError, TypeError) as exc:  # e.g. a line break in a header
        raise MailError(f"The message to an address at {domain} is malformed: {exc}.") from None
    try:
        with _connect(settings) as smtp:
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
        log.warning(
            "Mail to an address at %s failed: %s",
            domain,
            type(exc).__name__,
            extra={"recipient_domain": domain, "subject": subject},
        )
        raise MailError(
            f"The mail server {settings.smtp_host}:{settings.smtp_port} did not accept the "
            f"message ({_describe(exc)}). Check the smtp_* settings and that the server is "
            "reachable."
        ) from None
    log.info(
        "Mail sent to an address at %s: %s",
        domain,
        subject,
        extra={"recipient_domain": domain, "subject": subject},
    )


def _describe(exc: Exception) -> str:
    """What went wrong, without the recipient's address (SMTPRecipientsRefused holds it)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}, reply code {exc.smtp_code}"
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def _build(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def _connect(settings: Settings) -> smtplib.SMTP:
    host, port = settings.smtp_host, settings.smtp_port
    if settings.smtp_security == "tls":
        return smtplib.SMTP_SSL(
            host, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context()
        )
    smtp = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
    try:
        if settings.smtp_security == "starttls":
            # starttls() refuses to go on in clear text when the server does not offer it.
            smtp.starttls(context=ssl.create_default_context())
    except BaseException:
        smtp.close()
        raise
    return smtp
