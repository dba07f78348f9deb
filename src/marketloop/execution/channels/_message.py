"""The message a decision sends, the error a provider raises, and the provider protocol."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from marketloop.exceptions import ConfigError, MarketloopError, SchemaError, describe

#: The channels marketloop knows; a provider is registered per channel name.
CHANNELS = ("email", "sms", "push", "in_app", "webhook")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Message:
    """One message to one customer on one channel, the unit the outbox stores and sends.

    Parameters
    ----------
    message_id : str
        Idempotency key, unique per decision and channel, e.g. ``f"{decision_id}:{channel}"``.
        The outbox keeps one row per key; webhook providers receive it as ``Idempotency-Key``.
    decision_id : str
        The decision that produced the message (joins the decision log).
    customer_id : str
        Customer or anonymous visitor the message is for.
    channel : str
        One of ``"email"``, ``"sms"``, ``"push"``, ``"in_app"``, ``"webhook"``.
    purpose : str, default="marketing"
        Consent purpose, re-checked at dispatch time.
    subject, body : str, default=""
        Human-readable content (email subject and text, push title and text).
    payload : dict, default={}
        JSON-able extras: offer id, product ids, deep link.
    to : str or None, default=None
        Address, phone number or device token when known; email requires it.
    created_at : datetime, default=now (UTC)
        When the message was made; timezone-aware.

    Examples
    --------
    >>> m = Message("d1:email", "d1", "c1", "email", subject="Hi", to="c1@example.com")
    >>> Message.from_json(m.to_json()) == m
    True
    """

    message_id: str
    decision_id: str
    customer_id: str
    channel: str
    purpose: str = "marketing"
    subject: str = ""
    body: str = ""
    payload: dict[str, object] = field(default_factory=dict)
    to: str | None = None
    created_at: datetime = field(default_factory=_utcnow)

    def __post_init__(self) -> None:
        for name in ("message_id", "decision_id", "customer_id", "channel"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(describe(
                    where=f"Message.{name}",
                    expected="a non-empty string",
                    found=repr(value),
                ))
        if self.created_at.tzinfo is None:
            raise ConfigError(describe(
                where="Message.created_at",
                expected="a timezone-aware datetime",
                found=f"naive {self.created_at.isoformat()}",
                hint="Pass datetime.now(UTC) or attach tzinfo=UTC.",
            ))

    def to_dict(self) -> dict[str, object]:
        """The message as JSON-able fields (``created_at`` as ISO 8601 text)."""
        out = asdict(self)
        out["created_at"] = self.created_at.astimezone(UTC).isoformat()
        return out

    def to_json(self) -> str:
        """The message as compact JSON, keys sorted, so equal messages give equal text.

        Raises
        ------
        SchemaError
            If ``payload`` holds a value JSON cannot represent.
        """
        try:
            return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise SchemaError(describe(
                where=f"Message {self.message_id!r} payload",
                expected="JSON-able values (str, number, bool, None, list, dict)",
                found=str(exc),
                hint="Convert dates to ISO text and numpy numbers with float() or int().",
            )) from None

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Message:
        """Rebuild a message from :meth:`to_dict` output."""
        fields = dict(data)
        created = fields.get("created_at")
        if isinstance(created, str):
            fields["created_at"] = datetime.fromisoformat(created)
        return cls(**fields)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str) -> Message:
        """Rebuild a message from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


class DeliveryError(MarketloopError):
    """A provider could not deliver a message.

    Parameters
    ----------
    message : str
        What went wrong, naming the provider and the answer it got.
    retryable : bool, default=True
        True for transient faults (connection refused, timeout, HTTP 5xx or 429, SMTP 4xx):
        the outbox retries with backoff. False for permanent ones (HTTP 4xx, SMTP 5xx, a bad
        address): the message becomes a dead letter at once.
    retry_after_s : float or None, default=None
        A wait the provider asked for (HTTP ``Retry-After``); the next attempt waits at least
        this long.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@runtime_checkable
class Provider(Protocol):
    """Sends a message on one channel; raises :class:`DeliveryError` when it cannot."""

    async def send(self, message: Message) -> None:
        """Hand ``message`` to the channel; return only once the channel accepted it."""
        ...
