"""Outgoing email over SMTP. With no MAIL_SERVER configured, mail goes to the log."""

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailSettings:
    server: str | None
    port: int
    use_tls: bool
    use_ssl: bool
    username: str | None
    password: str | None
    default_sender: str
    timeout: int

    @classmethod
    def from_config(cls, cfg):
        return cls(
            server=cfg.get("MAIL_SERVER"),
            port=cfg.get("MAIL_PORT", 25),
            use_tls=cfg.get("MAIL_USE_TLS", False),
            use_ssl=cfg.get("MAIL_USE_SSL", False),
            username=cfg.get("MAIL_USERNAME"),
            password=cfg.get("MAIL_PASSWORD"),
            default_sender=cfg.get("MAIL_DEFAULT_SENDER", "no-reply@broker.example"),
            timeout=cfg.get("MAIL_TIMEOUT_SECONDS", 10),
        )


def build_message(settings, to, subject, text, html=None):
    message = EmailMessage()
    message["From"] = settings.default_sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.default_sender.rsplit("@", 1)[-1])
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def send_mail(settings, to, subject, text, html=None):
    message = build_message(settings, to, subject, text, html)
    if not settings.server:
        # First run without SMTP: the operator reads the mail (and its code) in the log.
        log.warning("MAIL_SERVER not set; mail to %s not sent.\nSubject: %s\n\n%s", to, subject, text)
        return
    if settings.use_ssl:
        client = smtplib.SMTP_SSL(
            settings.server, settings.port, timeout=settings.timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(settings.server, settings.port, timeout=settings.timeout)
    with client:
        if settings.use_tls and not settings.use_ssl:
            client.starttls(context=ssl.create_default_context())
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(message)
    log.info("mail sent to %s: %s", to, subject)
