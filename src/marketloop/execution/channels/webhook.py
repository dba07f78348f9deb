"""Signed JSON webhooks: SMS and push gateways, and the generic webhook channel."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx

from marketloop.exceptions import ConfigError, describe
from marketloop.execution.channels._message import DeliveryError, Message

SIGNATURE_HEADER = "X-Marketloop-Signature"
TIMESTAMP_HEADER = "X-Marketloop-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of
    ``timestamp + "." + body`` under ``secret``.

    The timestamp is signed with the body so a captured request cannot be replayed later
    with a fresh timestamp (the scheme Stripe and Slack use).

    Examples
    --------
    >>> sign("s3cret", "1700000000", b'{"a":1}')[:15]
    'sha256=1698a50b'
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a received webhook: the signature matches and the timestamp is recent.

    Parameters
    ----------
    secret : str
        The shared secret.
    body : bytes
        The raw request body, exactly as received.
    timestamp, signature : str
        The ``X-Marketloop-Timestamp`` and ``X-Marketloop-Signature`` header values.
    tolerance_s : float, default=300.0
        Largest accepted clock difference between sender and receiver.
    now : float or None
        Receiver time in epoch seconds (default: the clock).
    """
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    expected = sign(secret, timestamp, body)
    return age <= tolerance_s and hmac.compare_digest(expected, signature)


class WebhookProvider:
    """POSTs each message as signed JSON to one URL; used for SMS, push and webhooks.

    The body is ``Message.to_dict()`` plus ``"kind"``, compact JSON. Headers:
    ``Idempotency-Key: <message_id>`` (the same on every retry, so the receiver can drop
    a repeat), ``X-Marketloop-Timestamp: <epoch seconds>`` and
    ``X-Marketloop-Signature: sha256=<hex>`` from :func:`sign`; receivers check them with
    :func:`verify`.

    Parameters
    ----------
    url : str
        Endpoint (an SMS gateway, a push relay, a partner's webhook).
    secret : str
        Shared HMAC secret; at least 16 characters.
    kind : str, default="webhook"
        What the receiver does with it: ``"sms"``, ``"push"`` or ``"webhook"``.
    timeout_s : float, default=5.0
        Connect and read timeout.
    headers : dict of str to str or None, default=None
        Extra headers, e.g. the gateway's own API key.

    Raises
    ------
    DeliveryError
        From :meth:`send`: retryable on connection errors, timeouts, HTTP 5xx, 408, 425
        and 429 (honouring ``Retry-After`` seconds); not retryable on other 4xx and 3xx.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str,
        kind: str = "webhook",
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ConfigError(describe(
                f"WebhookProvider({url!r}) secret", "at least 16 characters",
                f"{len(secret)} characters", "Generate one with `openssl rand -hex 32`.",
            ))
        if not url.startswith(("http://", "https://")):
            raise ConfigError(describe(
                "WebhookProvider url", "an http:// or https:// URL", repr(url)
            ))
        self.url = url
        self.secret = secret
        self.kind = kind
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        """A pooled client for the running event loop (a client must not cross loops)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.is_closed or self._loop is not loop:
            self._pool = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
            self._loop = loop
        return self._pool

    def request(
        self, message: Message, *, now: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers :meth:`send` posts for ``message``."""
        body = json.dumps(
            {**message.to_dict(), "kind": self.kind}, sort_keys=True, separators=(",", ":")
        ).encode()
        timestamp = str(int(time.time() if now is None else now))
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: message.message_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        return body, headers

    async def send(self, message: Message) -> None:
        """POST one message; returns on any 2xx answer."""
        body, headers = self.request(message)
        where = f"{self.kind} webhook {self.url} for {message.message_id}"
        try:
            response = await self._client().post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"{where}: timed out ({exc!r})", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        retry_after = response.headers.get("Retry-After", "")
        raise DeliveryError(
            f"{where}: HTTP {status} {response.text[:200]!r}",
            retryable=retryable,
            retry_after_s=float(retry_after) if retry_after.isdigit() else None,
        )

    async def aclose(self) -> None:
        """Close the pooled HTTP client."""
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            await pool.aclose()
