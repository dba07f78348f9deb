"""The decision service's configuration: keys, limits, budgets, offers, triggers, channels.

Read from the ``[service]`` table of a TOML file (``marketloop serve --config FILE``) with
pydantic models that forbid unknown fields, so a misspelt setting is an error, not a silent
default. With no file the service starts on the embedded defaults: in-process state, the
DuckDB warehouse, rule-based decisions, and one full-scope key from ``MARKETLOOP_API_KEY``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marketloop.exceptions import ConfigError, describe

SCOPES = ("events:write", "decide", "admin")
#: Channels a decision may use; ``app`` is the in-app message shown on the site.
CHANNELS = ("app", "email", "push", "sms")
Scope = Literal["events:write", "decide", "admin"]


class ApiKey(BaseModel):
    """An API key and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=16, description="The secret, sent as a Bearer token.")
    name: str = Field("key", description="Shown in logs instead of the secret.")
    scopes: list[Scope] = Field(default_factory=lambda: list(SCOPES))


class ServiceOffer(BaseModel):
    """An offer the rules may choose, with its cost against a campaign budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    discount: float = Field(0.0, ge=0.0, lt=1.0, description="Share off the order.")
    cost: float = Field(0.0, ge=0.0, allow_inf_nan=False,
                        description="Expected cost charged to the budget when sent.")
    format: str = "plain"


class Limits(BaseModel):
    """Contact caps per customer and quiet hours (UTC) for messages sent away from the site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_day: int = Field(1, ge=0, description="Contacts per customer per UTC day.")
    per_week: int = Field(3, ge=0, description="Contacts per customer per ISO week.")
    quiet_start: int = Field(21, ge=0, le=23, description="Hour quiet hours begin.")
    quiet_end: int = Field(8, ge=0, le=23, description="Hour quiet hours end.")


class ServiceConfig(BaseModel):
    """Everything ``marketloop serve`` needs; every field has a working default."""

    model_config = ConfigDict(extra="forbid")

    warehouse_url: str | None = Field(None, description="Decision log; default the settings'.")
    state: str = Field("memory", description="memory, or redis://host:port/db")
    state_timeout_s: float = Field(0.25, gt=0.0, le=10.0, description="Redis socket timeout: "
                                   "past it a decision is answered 'nothing', degraded.")
    api_keys: list[ApiKey] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    budgets: dict[str, float] = Field(default_factory=lambda: {"default": 1_000.0},
                                      description="Campaign -> budget in the shop's currency.")
    offers: list[ServiceOffer] = Field(default_factory=lambda: [
        ServiceOffer(name="reminder", cost=0.02),
        ServiceOffer(name="pct10", discount=0.10, cost=2.0),
        ServiceOffer(name="freeship", cost=3.5),
    ])
    plan: Path | None = Field(None, description="A plan from marketloop plan campaign: its "
                              "customers get their planned offer, the rest the rules.")
    load_consents: bool = Field(True, description="Load the warehouse's consents at start.")
    epsilon: float = Field(0.1, ge=0.0, le=1.0, description="Share of exploratory choices.")
    triggers: list[dict] = Field(default_factory=list, description="Trigger rules.")
    channels: dict[str, dict] = Field(default_factory=dict, description="Channel providers.")
    outbox: Path = Field(Path("marketloop-outbox.sqlite"), description="Durable outbox file.")
    max_batch: int = Field(1_000, ge=1, le=100_000, description="Most events per request.")
    max_body_bytes: int = Field(1_048_576, ge=1_024, le=67_108_864,
                                description="Largest request body; more is 413.")
    body_timeout_s: float = Field(10.0, gt=0.0, le=300.0, description=(
        "Longest wait for the next part of a request body; then 408."))
    log_flush_s: float = Field(0.5, gt=0.0, le=60.0)
    log_writer: Literal["process", "thread"] = Field(
        "process", description="Who writes the decision log's batches: a writer process "
        "(the request path never waits for the interpreter lock while a batch is built) or "
        "a thread of the service.")
    opentelemetry: bool = Field(False, description="FastAPI's native OpenTelemetry traces, "
                                "metrics and logs (through the global providers). Off, the "
                                "service has its own /metrics and each request is ~30 us cheaper.")

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"expected 'memory' or a redis:// URL; found {value!r}")
        if value.startswith(("redis://", "rediss://")):
            from urllib.parse import urlsplit

            parts = urlsplit(value)
            db = parts.path.strip("/")
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError(f"expected a redis:// URL with a numeric port; found "
                                 f"{value!r}") from None
            if db and not db.isdigit():
                raise ValueError(f"expected a redis:// URL whose path is a database number "
                                 f"(redis://host:6379/0); found {value!r}")
        return value

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if not (amount >= 0 and amount < float("inf")):
                raise ValueError(f"budget {name!r} must be a non-negative amount; found {amount}")
        return value

    def keys(self) -> dict[str, ApiKey]:
        """Secret -> key: the configured keys plus ``MARKETLOOP_API_KEY`` (all scopes)."""
        out = {k.key: k for k in self.api_keys}
        env = os.environ.get("MARKETLOOP_API_KEY")
        if env:  # a local run's key: any length, every scope
            out[env] = ApiKey.model_construct(key=env, name="MARKETLOOP_API_KEY",
                                              scopes=list(SCOPES))
        return out


def load_service_config(path: str | Path | None = None, **overrides: object) -> ServiceConfig:
    """The ``[service]`` table of ``path`` (or defaults), with ``overrides`` applied.

    Raises
    ------
    ConfigError
        If the file is missing, not TOML, or a field is unknown or invalid; the message
        names the file and the field.
    """
    data: dict[str, object] = {}
    where = "service config"
    if path is not None:
        where = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(describe(where, "a TOML config file",
                                       "a folder" if p.is_dir() else "nothing at that path"))
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(describe(where, "a readable TOML file", str(exc))) from None
        table = raw.get("service", raw)
        if not isinstance(table, dict):
            raise ConfigError(describe(where, "a [service] table", f"service = {table!r}"[:80]))
        data = dict(table)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "service"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error":  # our validators' messages say what they found
            raise ConfigError(f"{where}, field {field!r}: {message}.") from None
        raise ConfigError(describe(f"{where}, field {field!r}",
                                   message[:1].lower() + message[1:],
                                   repr(err.get("input"))[:80])) from None


__all__ = ["CHANNELS", "SCOPES", "ApiKey", "Limits", "ServiceConfig", "ServiceOffer",
           "load_service_config"]
