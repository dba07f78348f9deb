"""The service's side of dispatch: triggers in, messages out through the durable outbox.

Built from the config: an :class:`Outbox` file, a provider per configured channel (always
in-app, for messages shown on the site), a :class:`Dispatcher` that runs in the background
and re-checks consent before every send, and a :class:`TriggerEngine` whose once-per-window
claims live in Redis when the state does (so several workers fire a trigger once) and in
the process otherwise. A timer loop asks the engine every second for idle carts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from marketloop.exceptions import ConfigError, describe
from marketloop.execution._api import ANON_PREFIX
from marketloop.execution.channels import (
    Dispatcher,
    InAppProvider,
    Message,
    Outbox,
    Provider,
    SMTPProvider,
    WebhookProvider,
)
from marketloop.execution.config import ServiceConfig
from marketloop.execution.decide import Decision
from marketloop.execution.state import State
from marketloop.execution.triggers import (
    DEFAULT_RULES,
    Fire,
    MemoryOnceStore,
    RedisOnceStore,
    TriggerEngine,
    load_triggers,
)

OnFire = Callable[[Fire, bool], Awaitable[object]]


def build_providers(channels: Mapping[str, Mapping[str, object]], inbox: Path
                    ) -> dict[str, Provider]:
    """Providers from ``[service.channels.NAME]`` tables; ``app`` is always in-app.

    ``kind = "smtp"`` takes ``host``, ``port``, ``sender``; ``kind = "webhook"`` takes
    ``url`` and ``secret`` (SMS, push and generic webhooks).
    """
    providers: dict[str, Provider] = {"app": InAppProvider(inbox)}
    for name, spec in channels.items():
        where = f"service.channels.{name}"
        options = {k: v for k, v in spec.items() if k != "kind"}
        try:
            if spec.get("kind") == "smtp":
                providers[name] = SMTPProvider(**options)  # type: ignore[arg-type]
            elif spec.get("kind") == "webhook":
                providers[name] = WebhookProvider(kind=name, **options)  # type: ignore[arg-type]
            else:
                raise ConfigError(describe(f"{where}.kind", "'smtp' or 'webhook'",
                                           repr(spec.get("kind"))))
        except TypeError as exc:
            raise ConfigError(describe(where, "the provider's options (docs/channels.md)",
                                       str(exc))) from None
    return providers


def check_dispatch_config(config: ServiceConfig) -> None:
    """Raise :class:`ConfigError` now for what a worker would refuse at start: the outbox's
    path, the trigger rules and the channel providers (nothing is opened or sent)."""
    _outbox_path(config)
    if config.triggers:
        load_triggers(config.triggers)
    for provider in build_providers(config.channels, Path(":memory:")).values():
        close = getattr(provider, "close", None)
        if callable(close):
            close()


def _outbox_path(config: ServiceConfig) -> Path:
    path = Path(config.outbox)
    if path.is_dir():
        raise ConfigError(describe("service config, field 'outbox'", "a file for the outbox",
                                   f"the folder {path}"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        file_in_path = isinstance(exc, FileExistsError | NotADirectoryError)
        why = "a part of the path is a file" if file_in_path else exc.strerror or str(exc)
        raise ConfigError(describe("service config, field 'outbox'",
                                   "a file in a folder that exists or can be made",
                                   f"{path} ({why})")) from None
    return path


class Dispatching:
    """Outbox, providers, dispatcher and triggers of one service process."""

    def __init__(self, config: ServiceConfig, state: State) -> None:
        self.state = state
        self.outbox_path = _outbox_path(config)
        self._outbox: Outbox | None = None
        inbox = self.outbox_path.with_name(self.outbox_path.stem + "-inapp.sqlite")
        self.providers = build_providers(config.channels, inbox)
        self._dispatcher: Dispatcher | None = None
        rules = load_triggers(config.triggers) if config.triggers else list(DEFAULT_RULES)
        if config.state == "memory":
            once = MemoryOnceStore()
        else:
            import redis
            import redis.asyncio

            timeouts = {"socket_timeout": config.state_timeout_s,
                        "socket_connect_timeout": config.state_timeout_s}
            once = RedisOnceStore(
                redis.Redis.from_url(config.state, **timeouts),
                async_client=redis.asyncio.Redis.from_url(config.state, **timeouts),
            )
        self.triggers = TriggerEngine(rules, once)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def outbox(self) -> Outbox:
        """The outbox file, opened on first use (and again after :meth:`stop`)."""
        if self._outbox is None:
            self._outbox = Outbox(self.outbox_path)
        return self._outbox

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None or self._dispatcher.outbox is not self.outbox:
            self._dispatcher = Dispatcher(self.outbox, self.providers, self._consent)
        return self._dispatcher

    async def _consent(self, customer_id: str, channel: str, purpose: str) -> bool:
        granted = await self.state.consent(customer_id, channel, purpose)
        return granted is not False if channel == "app" else granted is True

    async def queue(self, d: Decision, trigger: str | None = None) -> str:
        """Put a decision's message in the outbox: ``queued``, or ``caller`` (no provider)."""
        if d.offer is None or d.channel not in self.providers:
            return "caller"
        to = None if d.channel == "app" else await self.state.address(d.customer_id, d.channel)
        message = Message(
            message_id=f"{d.decision_id}:{d.channel}", decision_id=d.decision_id,
            customer_id=d.customer_id, channel=d.channel,
            purpose="personalisation" if d.channel == "app" else "marketing",
            subject=_subject(d.offer), body=_body(d.offer, trigger),
            payload={"offer": d.offer, "product_id": d.product_id, "campaign": d.campaign,
                     "trigger": trigger, "format": d.format}, to=to)
        await run_in_threadpool(self.outbox.enqueue, message)
        return "queued"

    async def revoke(self, customer_id: str, channel: str, purpose: str) -> int:
        """Cancel what waits for a customer on a channel whose consent was withdrawn."""
        return int(await run_in_threadpool(self.outbox.cancel, customer_id, channel,
                                           "consent revoked", purpose=purpose))

    def inbox(self, customer_id: str) -> list[Message]:
        provider = self.providers["app"]
        return provider.inbox(customer_id)  # type: ignore[attr-defined]

    def start(self, on_fire: OnFire) -> None:
        """Run the dispatcher and the idle-cart timers in the background."""
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self.dispatcher.run_forever(self._stop, 0.1)),
                       asyncio.create_task(self._timers(on_fire))]

    async def _timers(self, on_fire: OnFire) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a Redis outage: try again next second
                for fire in await self.triggers.adue():
                    await on_fire(fire, not fire.customer_id.startswith(ANON_PREFIX))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        for holder in (*self.providers.values(), self.triggers.once):
            closer = getattr(holder, "aclose", None)
            if closer is not None:
                await closer()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None


def _subject(offer: str) -> str:
    return {"reminder": "You left something in your basket", "pct10": "10% off, for you",
            "freeship": "Free shipping on your next order"}.get(offer, f"An offer for you: {offer}")


def _body(offer: str, trigger: str | None) -> str:
    why = {"cart_idle": "Your basket is waiting.", "return_after": "We have missed you.",
           "dwell": "Still thinking about it?"}.get(trigger or "", "")
    return f"{why} {_subject(offer)}.".strip()
