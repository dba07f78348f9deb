"""Triggers: rules over the live event stream that ask for a decision (dwell, idle cart, return).

Rules are declared in config and validated by pydantic (``extra="forbid"``). The
:class:`TriggerEngine` keeps, per process, the little session state the rules need (last
activity, purchase seen, open cart) in a bounded LRU with a time to live, and a
:class:`OnceStore` makes each trigger fire once per key and window, across processes when
the store is Redis. See docs/channels.md, "Triggers".
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from marketloop.exceptions import ConfigError, SchemaError, describe

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

_NAME = r"^[A-Za-z0-9_.\-]+$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    window_s: float = Field(86_400.0, gt=0, description="Fires at most once per key per window.")
    channel: str | None = Field(None, description="Channel to prefer; None lets decide choose.")


class DwellRule(_Rule):
    """A product viewed for at least ``min_dwell_ms`` in a session with no purchase yet."""

    kind: Literal["dwell"] = "dwell"
    min_dwell_ms: int = Field(30_000, gt=0)
    per_product: bool = Field(True, description="Key by customer and product, else customer.")


class CartIdleRule(_Rule):
    """An add-to-cart, then ``idle_s`` without any event, checkout or purchase in the session."""

    kind: Literal["cart_idle"] = "cart_idle"
    idle_s: float = Field(1_800.0, gt=0)


class ReturnAfterRule(_Rule):
    """The first event of a customer whose previous one was ``min_gap_days`` or more ago."""

    kind: Literal["return_after"] = "return_after"
    min_gap_days: float = Field(90.0, gt=0)


Rule = Annotated[DwellRule | CartIdleRule | ReturnAfterRule, Field(discriminator="kind")]

#: The three rules issue 4 names, used when the config declares none.
DEFAULT_RULES: tuple[DwellRule | CartIdleRule | ReturnAfterRule, ...] = (
    DwellRule(name="long_dwell"),
    CartIdleRule(name="cart_idle"),
    ReturnAfterRule(name="win_back"),
)
_RULES = TypeAdapter(list[Rule])


def load_triggers(
    config: Sequence[Mapping[str, object]] | Mapping[str, object],
) -> list[DwellRule | CartIdleRule | ReturnAfterRule]:
    """Validate trigger rules from config: a list of rule mappings, or ``{"rules": [...]}``.

    Raises
    ------
    ConfigError
        For an unknown ``kind``, an unknown or invalid field, or a repeated ``name``.

    Examples
    --------
    >>> [r.name for r in load_triggers([{"kind": "dwell", "name": "d", "min_dwell_ms": 20000}])]
    ['d']
    """
    raw = config.get("rules", []) if isinstance(config, Mapping) else config
    try:
        rules = _RULES.validate_python(list(raw))
    except ValidationError as exc:
        raise ConfigError(describe(
            *_explain(exc.errors()[0]), "Rule kinds and fields are listed in docs/channels.md."
        )) from None
    names = [r.name for r in rules]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(describe("triggers", "unique rule names", f"{repeated} repeated"))
    return rules


def _explain(err: Mapping[str, object]) -> tuple[str, str, str]:
    """Where, expected and found for a pydantic error on the rule list."""
    loc = list(err["loc"])  # type: ignore[call-overload]
    if len(loc) > 1 and loc[1] in ("dwell", "cart_idle", "return_after"):
        del loc[1]  # the union member pydantic tried
    where = "triggers" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    kind, value = err["type"], err.get("input")
    if kind == "union_tag_invalid":
        return f"{where}.kind", "kind 'dwell', 'cart_idle' or 'return_after'", repr(
            value.get("kind") if isinstance(value, Mapping) else value)
    if kind == "union_tag_not_found":
        keys = sorted(value) if isinstance(value, Mapping) else value
        return where, "a 'kind' field ('dwell', 'cart_idle' or 'return_after')", f"keys {keys}"
    if kind == "extra_forbidden":
        return where, "only the fields of the rule's kind", f"unknown field {loc[-1]!r}"
    msg = str(err["msg"]).removeprefix("Input should be ")
    return where, msg[:1].lower() + msg[1:], repr(value)


@dataclass(frozen=True)
class Fire:
    """A trigger that fired: ask for a decision for ``customer_id`` with ``context``.

    ``context`` holds scalars only, ready for a decision request: ``trigger`` (the kind),
    ``rule`` (the name), ``session_id``, and per kind ``product_id`` and ``dwell_ms``;
    ``product_id``, ``cart_product_ids`` and ``idle_s``; ``gap_days``.
    """

    rule: str
    kind: str
    customer_id: str
    key: str
    context: dict[str, str | float | int | bool]
    ts: float
    channel: str | None = None


class OnceStore(Protocol):
    """Remembers claimed keys for a time to live: the first claim wins, later ones lose.

    A store that does I/O may also offer ``async def aclaim(key, ttl_s, now)``, which
    :meth:`TriggerEngine.aobserve` and :meth:`TriggerEngine.adue` await instead.
    """

    def claim(self, key: str, ttl_s: float, now: float) -> bool:
        """True, and remember ``key`` for ``ttl_s``, if it is not held; else False."""
        ...


class MemoryOnceStore:
    """A thread-safe :class:`OnceStore` in this process's memory, on the caller's clock.

    Expired keys are swept every ``sweep_every`` claims, so memory follows the live keys.
    """

    def __init__(self, *, sweep_every: int = 4096) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._claims = 0
        self.sweep_every = sweep_every

    def claim(self, key: str, ttl_s: float, now: float) -> bool:
        with self._lock:
            self._claims += 1
            if self._claims % self.sweep_every == 0:
                self._until = {k: t for k, t in self._until.items() if t > now}
            if self._until.get(key, -float("inf")) > now:
                return False
            self._until[key] = now + ttl_s
            return True

    def __len__(self) -> int:
        return len(self._until)


class RedisOnceStore:
    """A :class:`OnceStore` shared by every process on one Redis: ``SET key 1 NX PX ttl``.

    The TTL runs on the Redis server's clock, so ``now`` is not used. Redis errors
    propagate: the caller decides whether a trigger may fire without the store.

    Parameters
    ----------
    client : redis.Redis
        For :meth:`claim`.
    async_client : redis.asyncio.Redis, optional
        For :meth:`aclaim`, so a service's event loop never waits on Redis; without it
        :meth:`aclaim` runs :meth:`claim` in a thread.
    prefix : str, default="marketloop:once:"
        Key prefix.
    """

    def __init__(self, client: Redis, *, async_client: AsyncRedis | None = None,
                 prefix: str = "marketloop:once:") -> None:
        self.client = client
        self.async_client = async_client
        self.prefix = prefix

    def claim(self, key: str, ttl_s: float, now: float) -> bool:
        return bool(self.client.set(self.prefix + key, "1", nx=True, px=_px(ttl_s)))

    async def aclaim(self, key: str, ttl_s: float, now: float) -> bool:
        if self.async_client is None:
            return await asyncio.to_thread(self.claim, key, ttl_s, now)
        return bool(await self.async_client.set(self.prefix + key, "1", nx=True,
                                                px=_px(ttl_s)))

    async def aclose(self) -> None:
        """Close both clients' connections."""
        self.client.close()
        if self.async_client is not None:
            await self.async_client.aclose()


def _px(ttl_s: float) -> int:
    return max(1, int(ttl_s * 1000))


@dataclass
class _Session:
    identity: str
    session_id: str
    last_ts: float
    purchased: bool = False
    cart: list[str] = field(default_factory=list)  # products added since the last checkout
    scheduled: set[str] = field(default_factory=set)  # cart rules with a live timer


def _epoch(value: object, where: str) -> float:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise SchemaError(describe(where, "epoch seconds, a datetime or ISO 8601 text",
                               repr(value)))


class TriggerEngine:
    """Turns events into :class:`Fire` records, at most one per key and window.

    Parameters
    ----------
    rules : sequence of rules, default=DEFAULT_RULES
        Validated rules (see :func:`load_triggers`).
    once : OnceStore or None, default=None
        Where fired keys are remembered; None makes a :class:`MemoryOnceStore`. Share a
        :class:`RedisOnceStore` between workers so a key fires once across all of them.
    last_seen : callable or None, default=None
        ``last_seen(customer_id) -> float | datetime | None``, the customer's previous
        activity from the warehouse; asked once per customer per process, at their first
        event, for ``return_after`` rules. Without it, only activity this process saw counts.
    max_sessions : int, default=100_000
        Sessions kept (least recently active dropped first).
    session_ttl_s : float, default=14_400
        A session with no event for this long is forgotten; keep it above every ``idle_s``.
    max_customers : int, default=1_000_000
        Customers whose last activity is remembered for ``return_after``.
    max_pending : int, default=10_000
        Fires held while the once-store is unreachable (oldest dropped first); they go
        out with the next call that reaches it, so a retried event loses no trigger.

    Notes
    -----
    Session state lives in this process. With several workers, route a session's events
    to one worker (or keep one trigger worker); otherwise a checkout seen by another
    worker does not stop this one's cart reminder.

    Examples
    --------
    >>> engine = TriggerEngine()
    >>> fires = engine.observe({"type": "product_view", "customer_id": "c1",
    ...     "session_id": "s1", "product_id": "p1", "dwell_ms": 45_000, "ts": 0})
    >>> [(f.rule, f.key, f.context["trigger"]) for f in fires]
    [('long_dwell', 'long_dwell:c1:p1', 'dwell')]
    >>> engine.observe({"type": "add_to_cart", "customer_id": "c1", "session_id": "s1",
    ...     "product_id": "p1", "ts": 60})
    []
    >>> [f.key for f in engine.due(now=60 + 1_800)]
    ['cart_idle:c1:s1']
    """

    def __init__(
        self,
        rules: Sequence[DwellRule | CartIdleRule | ReturnAfterRule] = DEFAULT_RULES,
        once: OnceStore | None = None,
        *,
        last_seen: Callable[[str], float | datetime | None] | None = None,
        max_sessions: int = 100_000,
        session_ttl_s: float = 14_400.0,
        max_customers: int = 1_000_000,
        max_pending: int = 10_000,
    ) -> None:
        self.rules = tuple(rules)
        for rule in self.rules:
            if isinstance(rule, CartIdleRule) and rule.idle_s >= session_ttl_s:
                raise ConfigError(describe(
                    f"trigger {rule.name!r} idle_s", f"less than session_ttl_s={session_ttl_s:g}",
                    f"{rule.idle_s:g}", "Raise session_ttl_s or the session ends first.",
                ))
        self.once: OnceStore = MemoryOnceStore() if once is None else once
        self.last_seen = last_seen
        self.max_sessions = max_sessions
        self.session_ttl_s = session_ttl_s
        self.max_customers = max_customers
        self._sessions: OrderedDict[tuple[str, str], _Session] = OrderedDict()
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._timers: list[tuple[float, int, tuple[str, str], CartIdleRule]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self.max_pending = max_pending
        self._pending: OrderedDict[str, tuple[Fire, float, bool]] = OrderedDict()

    def __len__(self) -> int:
        """Sessions held in memory."""
        return len(self._sessions)

    def observe(self, event: Mapping[str, object]) -> list[Fire]:
        """Update state with one event and return the triggers it fires now.

        Parameters
        ----------
        event : mapping
            ``type`` (page_view, product_view, add_to_cart, checkout, purchase; others
            count as activity), ``customer_id`` or ``anonymous_id``, ``session_id``
            (default: one session per identity), ``ts`` (epoch seconds, datetime or ISO
            text; default: now), and ``product_id`` / ``dwell_ms`` where they apply.

        Raises
        ------
        SchemaError
            If the event has no ``type`` or neither ``customer_id`` nor ``anonymous_id``.
        """
        return self._claimed(self._observe(event))

    async def aobserve(self, event: Mapping[str, object]) -> list[Fire]:
        """As :meth:`observe`, awaiting the once-store's claims (for an event loop).

        The session state is updated at once; only the claims wait, so a slow store holds
        up this call and no other.
        """
        return await self._aclaimed(self._observe(event))

    def due(self, now: float | datetime | None = None) -> list[Fire]:
        """The timer triggers due at ``now``: carts idle for their rule's ``idle_s``."""
        return self._claimed(self._due(now))

    async def adue(self, now: float | datetime | None = None) -> list[Fire]:
        """As :meth:`due`, awaiting the once-store's claims."""
        return await self._aclaimed(self._due(now))

    # A claim that fails (the store is down) must not lose the fire: the session state has
    # already moved on (a retried event finds no gap to win back, a popped timer is gone).
    # The fires not yet claimed, and those won but not yet returned, wait in ``_pending``
    # and go out with the next call that reaches the store: the retry, or the timer tick.
    # A held fire whose claim fails again stays held without failing the call: an event
    # that fires nothing of its own is not refused for another customer's trigger.
    def _claimed(self, found: list[tuple[Fire, float]]) -> list[Fire]:
        """:meth:`_aclaimed` with the store's blocking ``claim``: the coroutine never
        suspends, so it runs to its end at the first step."""
        steps = self._aclaimed(found, blocking=True)
        try:
            steps.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        steps.close()
        raise RuntimeError("a blocking trigger claim suspended")

    async def _aclaimed(self, found: list[tuple[Fire, float]], *,
                        blocking: bool = False) -> list[Fire]:
        """The fires of ``found`` this engine wins, after the ones held from an outage.

        A held fire that still cannot be claimed stays held (never raises); a claim of a new
        fire that fails holds it, the rest of ``found`` and the fires won so far, then
        raises.
        """
        aclaim = None if blocking else getattr(self.once, "aclaim", None)

        async def claim(fire: Fire, ttl: float) -> bool:
            if aclaim is not None:
                return bool(await aclaim(fire.key, ttl, fire.ts))
            return self.once.claim(fire.key, ttl, fire.ts)

        fires: list[Fire] = []
        waiting = self._take_pending()
        for i, (fire, ttl, won) in enumerate(waiting):  # an outage's fires: never raise here
            try:
                won = won or await claim(fire, ttl)
            except Exception:
                self._keep_pending(waiting[i:])
                break
            if won:
                fires.append(fire)
        for i, (fire, ttl) in enumerate(found):
            try:
                won = await claim(fire, ttl)
            except Exception:
                self._keep_pending([(f, 0.0, True) for f in fires]
                                   + [(f, t, False) for f, t in found[i:]])
                raise
            if won:
                fires.append(fire)
        return fires

    def hold(self, fires: Sequence[Fire]) -> None:
        """Keep fires already claimed but not acted on (the caller failed before it could):
        they go out with the next call, as a claim that failed would."""
        self._keep_pending([(fire, 0.0, True) for fire in fires])

    def _take_pending(self) -> list[tuple[Fire, float, bool]]:
        with self._lock:
            waiting = list(self._pending.values())
            self._pending.clear()
        return waiting

    def _keep_pending(self, todo: list[tuple[Fire, float, bool]]) -> None:
        with self._lock:
            for fire, ttl, won in todo:
                held = self._pending.get(fire.key)
                self._pending[fire.key] = (fire, ttl, won or (held is not None and held[2]))
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)

    @property
    def pending(self) -> int:
        """Fires waiting for the once-store to come back."""
        return len(self._pending)

    # The rules find candidates under the lock; the caller claims them after, so a
    # store's round trip is never made with the lock held.
    def _observe(self, event: Mapping[str, object]) -> list[tuple[Fire, float]]:
        kind, identity, session_id, ts = _identify(event)
        with self._lock:
            fires = self._return_after(identity, session_id, ts)
            session = self._session(identity, session_id, ts)
            if kind in ("checkout", "purchase"):
                session.cart.clear()
                session.purchased = session.purchased or kind == "purchase"
            elif kind == "add_to_cart":
                session.cart.append(str(event.get("product_id", "")))
                self._schedule(session)
            elif kind == "product_view":
                fires += self._dwell(session, event, ts)
            self._evict(ts)
        return fires

    def _due(self, now: float | datetime | None) -> list[tuple[Fire, float]]:
        t = _epoch(now, "TriggerEngine.due(now)")
        fires: list[tuple[Fire, float]] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= t:
                _, _, skey, rule = heapq.heappop(self._timers)
                session = self._sessions.get(skey)
                if session is None or not session.cart:
                    if session is not None:
                        session.scheduled.discard(rule.name)
                    continue
                deadline = session.last_ts + rule.idle_s
                if deadline > t:  # activity since: wait again from the last event
                    self._push(deadline, skey, rule)
                    continue
                session.scheduled.discard(rule.name)
                key = f"{rule.name}:{session.identity}:{session.session_id}"
                fires.append((self._fire(rule, session, key, t, {
                    "product_id": session.cart[-1],
                    "cart_product_ids": ",".join(session.cart),
                    "idle_s": t - session.last_ts,
                }), rule.window_s))
            self._evict(t)
        return fires

    # -- rules ----------------------------------------------------------------------------
    def _dwell(self, session: _Session, event: Mapping[str, object],
               ts: float) -> list[tuple[Fire, float]]:
        dwell = event.get("dwell_ms")
        if session.purchased or not isinstance(dwell, int | float) or isinstance(dwell, bool):
            return []
        product = str(event.get("product_id", ""))
        fires = []
        for rule in self.rules:
            if isinstance(rule, DwellRule) and dwell >= rule.min_dwell_ms:
                key = f"{rule.name}:{session.identity}" + (f":{product}" if rule.per_product
                                                           else "")
                fires.append((self._fire(rule, session, key, ts,
                                         {"product_id": product, "dwell_ms": dwell}),
                              rule.window_s))
        return fires

    def _return_after(self, identity: str, session_id: str,
                      ts: float) -> list[tuple[Fire, float]]:
        previous = self._seen.get(identity)
        if previous is None and self.last_seen is not None:
            found = self.last_seen(identity)
            previous = None if found is None else _epoch(found, "last_seen(customer_id)")
        self._seen[identity] = ts if previous is None else max(previous, ts)
        self._seen.move_to_end(identity)
        while len(self._seen) > self.max_customers:
            self._seen.popitem(last=False)
        if previous is None:
            return []
        fires = []
        for rule in self.rules:
            if isinstance(rule, ReturnAfterRule) and ts - previous >= rule.min_gap_days * 86_400:
                key = f"{rule.name}:{identity}"
                session = _Session(identity, session_id, ts)
                fires.append((self._fire(rule, session, key, ts, {
                    "gap_days": (ts - previous) / 86_400,
                }), rule.window_s))
        return fires

    # -- state ----------------------------------------------------------------------------
    def _session(self, identity: str, session_id: str, ts: float) -> _Session:
        skey = (identity, session_id)
        session = self._sessions.get(skey)
        if session is None:
            session = self._sessions[skey] = _Session(identity, session_id, ts)
        session.last_ts = max(session.last_ts, ts)
        self._sessions.move_to_end(skey)
        return session

    def _schedule(self, session: _Session) -> None:
        for rule in self.rules:
            if isinstance(rule, CartIdleRule) and rule.name not in session.scheduled:
                session.scheduled.add(rule.name)
                self._push(session.last_ts + rule.idle_s,
                           (session.identity, session.session_id), rule)

    def _push(self, deadline: float, skey: tuple[str, str], rule: CartIdleRule) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, skey, rule))

    def _evict(self, now: float) -> None:
        sessions = self._sessions
        while sessions:
            skey, oldest = next(iter(sessions.items()))
            if len(sessions) <= self.max_sessions and oldest.last_ts > now - self.session_ttl_s:
                break
            del sessions[skey]

    @staticmethod
    def _fire(rule: DwellRule | CartIdleRule | ReturnAfterRule, session: _Session, key: str,
              ts: float, extra: dict[str, str | float | int | bool]) -> Fire:
        context: dict[str, str | float | int | bool] = {
            "trigger": rule.kind, "rule": rule.name, "session_id": session.session_id, **extra,
        }
        return Fire(rule.name, rule.kind, session.identity, key, context, ts, rule.channel)


def _identify(event: Mapping[str, object]) -> tuple[str, str, str, float]:
    """The event's type, identity (customer or anonymous id), session and time."""
    kind = event.get("type")
    identity = event.get("customer_id") or event.get("anonymous_id")
    if not isinstance(kind, str) or not kind:
        raise SchemaError(describe("trigger event", "a 'type'", f"keys {sorted(event)}"))
    if not isinstance(identity, str):
        raise SchemaError(describe(
            f"trigger event of type {kind!r}", "a 'customer_id' or 'anonymous_id'",
            f"keys {sorted(event)}",
        ))
    session_id = str(event.get("session_id") or identity)
    return kind, identity, session_id, _epoch(event.get("ts"), f"{kind} event 'ts'")
