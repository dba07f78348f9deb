"""The HTTP contract of the decision service: request and response bodies (pydantic)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from marketloop.data.schema import EVENT_TYPES

Id = Field(None, min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f]+$")
ChannelName = Literal["app", "email", "push", "sms"]
OutcomeKind = Literal["conversion", "revenue", "complaint", "unsubscribe", "click", "open"]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


def _in_utc(ts: dt.datetime) -> dt.datetime:
    """A time whose UTC equivalent exists (9999-12-31T23:59-01:00 does not)."""
    try:
        ts.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("a time that falls within years 1-9999 in UTC") from None
    return ts


Timestamp = Annotated[dt.datetime, AfterValidator(_in_utc)]

#: How far ahead of the service's clock an event may be stamped (clients' clocks drift).
MAX_CLOCK_AHEAD = dt.timedelta(hours=1)


def _not_ahead(ts: dt.datetime) -> dt.datetime:
    """An event time no later than an hour from now: the trigger engine's sessions age by
    event time, so one event from year 9999 would end every session."""
    utc = ts.astimezone(dt.UTC) if ts.tzinfo else ts.replace(tzinfo=dt.UTC)
    if utc > dt.datetime.now(dt.UTC) + MAX_CLOCK_AHEAD:
        raise ValueError("a time no later than an hour from the service's clock")
    return ts


EventTime = Annotated[dt.datetime, AfterValidator(_in_utc), AfterValidator(_not_ahead)]

#: Visitors are keyed ``anon:ID`` (see :attr:`_Someone.who`), so no customer id may look so.
ANON_PREFIX = "anon:"


def _not_anonymous(customer_id: str | None) -> str | None:
    if customer_id is not None and customer_id.startswith(ANON_PREFIX):
        raise ValueError(f"a customer id not starting with {ANON_PREFIX!r} (the prefix names "
                         "visitors: send it as anonymous_id without the prefix)")
    return customer_id


CustomerId = Annotated[str | None, AfterValidator(_not_anonymous)]

#: Ids in a path keep the rules of ids in a body.
IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f]+$")]
CustomerPath = Annotated[IdPath, AfterValidator(_not_anonymous)]


class _Someone(BaseModel):
    """A known customer (``customer_id``) or an anonymous visitor (``anonymous_id``)."""

    customer_id: CustomerId = Id
    anonymous_id: str | None = Id

    @model_validator(mode="after")
    def _one_id(self) -> _Someone:
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("customer_id or anonymous_id is required")
        return self

    @property
    def who(self) -> tuple[str, bool]:
        """The id decisions are keyed by, and whether the customer is known."""
        if self.customer_id is not None:
            return self.customer_id, True
        return f"{ANON_PREFIX}{self.anonymous_id}", False


class EventIn(_Someone):
    """One site or app event."""

    model_config = ConfigDict(extra="forbid")

    type: EventType
    event_id: str | None = Id
    session_id: str | None = Id
    ts: EventTime | None = None
    product_id: str | None = Id
    dwell_ms: int | None = Field(None, ge=0, le=86_400_000, strict=True)  # "40000" is refused
    properties: dict[str, Any] = Field(default_factory=dict)


class EventBatch(BaseModel):
    """Several events in one request."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class DecideIn(_Someone):
    """A decision request: who, where they are and what they do (``context``)."""

    model_config = ConfigDict(extra="forbid")

    context: dict[str, Any] = Field(default_factory=dict)
    channels: list[ChannelName] | None = Field(None, min_length=1)
    campaign: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class Action(BaseModel):
    offer: str
    channel: ChannelName
    format: str | None = None
    product_id: str | None = None
    send_at: str
    dispatch: Literal["queued", "caller"] = Field(
        "caller", description="queued: the service sends it through the channel's outbox; "
        "caller: no provider is configured for the channel, the caller delivers it.")


class Fired(BaseModel):
    """A trigger an event fired, and what was decided for it."""

    rule: str
    kind: str
    decision_id: str = Field(description="GET /v1/decisions/{decision_id} gives it whole.")
    action: Action | None = Field(description="As in POST /v1/decide: null for nothing.")
    reasons: list[str]
    dispatch: Literal["queued", "caller"]


class EventsAccepted(BaseModel):
    accepted: int
    fired: list[Fired] = Field(default_factory=list)
    request_id: str


class DecisionOut(BaseModel):
    decision_id: str
    customer_id: str
    ts: str
    policy: str
    action: Action | None
    propensity: float
    reasons: list[str]
    campaign: str
    degraded: bool
    chosen: str | None = Field(None, description=(
        "The offer the policy chose (null: it chose nothing). When action is null but "
        "chosen is not, consent, quiet hours, a cap, the budget or the state store refused "
        "it, and propensity (of what was done) is 1."))
    chosen_propensity: float = Field(1.0, description="Probability of chosen under the policy.")
    request_id: str | None = None
    context: dict[str, Any] | None = None


class OutcomeIn(BaseModel):
    """What followed a decision."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f]+$")
    kind: OutcomeKind
    value: float | None = Field(None, allow_inf_nan=False)
    ts: Timestamp | None = None


class OutcomeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcomes: list[OutcomeIn] = Field(min_length=1)


class ConsentIn(BaseModel):
    """A consent change for one channel and purpose."""

    model_config = ConfigDict(extra="forbid")

    channel: ChannelName
    purpose: Literal["marketing", "personalisation"] = "marketing"
    granted: bool = Field(strict=True)  # true or false; "yes" or 1 is refused
    address: str | None = Field(None, min_length=3, max_length=320,
                                description="E-mail address, phone number or device token.")


class Accepted(BaseModel):
    accepted: int
    request_id: str
    cancelled: int = 0


class ErrorOut(BaseModel):
    error: str
    field: str | None = None
    request_id: str | None = None
