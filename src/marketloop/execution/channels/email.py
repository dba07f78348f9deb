"""Email through SMTP (stdlib ``smtplib`` in a worker thread, one connection per message)."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from marketloop.execution.channels._message import DeliveryError, Message

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_ID_SAFE = re.compile(r"[^A-Za-z0-9._\-]")


def _classify(exc: Exception, where: str) -> DeliveryError:
    """SMTP says 4yz for transient and 5yz for permanent faults; the network is transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        transient = all(400 <= code < 500 for code in codes)
        return DeliveryError(f"{where}: recipient refused {exc.recipients}", retryable=transient)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        detail = exc.smtp_error.decode(errors="replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        return DeliveryError(f"{where}: SMTP {code} {detail}", retryable=not 500 <= code < 600)
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
        return DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True)
    return DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True)


class SMTPProvider:
    """Sends ``email`` messages to an SMTP relay.

    Each message is one SMTP session in a worker thread (``asyncio.to_thread``), so the
    event loop never blocks. The email carries a ``Message-ID`` derived from
    ``Message.message_id``, the same on every retry, and the key itself in
    ``X-Marketloop-Message-Id``: SMTP has no idempotency key, so these headers are what a
    relay or mailbox can de-duplicate a resend by.

    Parameters
    ----------
    host : str
        Relay host name or address.
    port : int
        Relay port (25, 587, or a test server's).
    sender : str
        ``From`` address.
    timeout_s : float, default=10.0
        Socket timeout for connecting and each SMTP command.
    username, password : str or None, default=None
        Credentials for ``AUTH`` when the relay needs them.
    starttls : bool, default=False
        Upgrade the session with ``STARTTLS`` before authenticating.
    domain : str, default="marketloop"
        Right-hand side of generated ``Message-ID`` headers.

    Raises
    ------
    DeliveryError
        From :meth:`send`: retryable for connection failures, timeouts and SMTP 4yz
        replies; not retryable for SMTP 5yz replies and a missing or malformed address.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        timeout_s: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        domain: str = "marketloop",
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s
        self.username = username
        self.password = password
        self.starttls = starttls
        self.domain = domain

    def build(self, message: Message) -> EmailMessage:
        """The email for ``message``: headers, and the body as plain text."""
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to or ""
        email["Subject"] = message.subject
        email["Date"] = formatdate(message.created_at.timestamp(), usegmt=True)
        email["Message-ID"] = f"<{_ID_SAFE.sub('.', message.message_id)}@{self.domain}>"
        email["X-Marketloop-Message-Id"] = message.message_id
        email["X-Marketloop-Decision-Id"] = message.decision_id
        email.set_content(message.body or "")
        return email

    def _send_blocking(self, email: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None:
                smtp.login(self.username, self.password or "")
            smtp.send_message(email)

    async def send(self, message: Message) -> None:
        """Deliver one email; returns once the relay accepted it (250 after DATA)."""
        where = f"SMTP {self.host}:{self.port} for {message.message_id}"
        if message.to is None or not _ADDRESS.match(message.to):
            raise DeliveryError(
                f"{where}: expected an email address in Message.to; found {message.to!r}",
                retryable=False,
            )
        email = self.build(message)
        try:
            await asyncio.to_thread(self._send_blocking, email)
        except (smtplib.SMTPException, OSError) as exc:
            raise _classify(exc, where) from exc
