"""Trigger rules: dwell, idle cart and return, once per key and window, on one or two engines."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from marketloop.exceptions import ConfigError, SchemaError
from marketloop.execution.triggers import (
    CartIdleRule,
    DwellRule,
    MemoryOnceStore,
    RedisOnceStore,
    ReturnAfterRule,
    TriggerEngine,
    load_triggers,
)

DAY = 86_400.0
RULES = load_triggers([
    {"kind": "dwell", "name": "long_dwell", "min_dwell_ms": 30_000, "window_s": DAY},
    {"kind": "cart_idle", "name": "cart_idle", "idle_s": 1_800},
    {"kind": "return_after", "name": "win_back", "min_gap_days": 90},
])


def _view(ts: float, dwell_ms: int = 45_000, *, customer: str = "c1", session: str = "s1",
          product: str = "p1") -> dict[str, object]:
    return {"type": "product_view", "customer_id": customer, "session_id": session,
            "product_id": product, "dwell_ms": dwell_ms, "ts": ts}


def _event(kind: str, ts: float, *, customer: str = "c1", session: str = "s1",
           product: str = "p1") -> dict[str, object]:
    return {"type": kind, "customer_id": customer, "session_id": session,
            "product_id": product, "ts": ts}


# -- dwell --------------------------------------------------------------------------------
def test_dwell_of_30_s_fires_once_per_window() -> None:
    engine = TriggerEngine(RULES)
    [fire] = engine.observe(_view(0))
    assert (fire.rule, fire.kind, fire.customer_id, fire.key) == (
        "long_dwell", "dwell", "c1", "long_dwell:c1:p1")
    assert fire.context == {"trigger": "dwell", "rule": "long_dwell", "session_id": "s1",
                            "product_id": "p1", "dwell_ms": 45_000}
    assert engine.observe(_view(60)) == []  # same product, same window
    assert engine.observe(_view(DAY - 1, session="s2")) == []  # window spans sessions
    assert [f.key for f in engine.observe(_view(DAY, session="s3"))] == ["long_dwell:c1:p1"]
    assert [f.key for f in engine.observe(_view(70, product="p2"))] == ["long_dwell:c1:p2"]


def test_a_dwell_under_the_threshold_does_not_fire() -> None:
    engine = TriggerEngine(RULES)
    assert engine.observe(_view(0, dwell_ms=29_999)) == []
    assert len(engine.observe(_view(1, dwell_ms=30_000))) == 1
    assert engine.observe(_event("product_view", 2, product="p9")) == []  # no dwell_ms


def test_a_purchase_in_the_session_stops_the_dwell_trigger() -> None:
    engine = TriggerEngine(RULES)
    assert engine.observe(_event("purchase", 0)) == []
    assert engine.observe(_view(10)) == []
    assert len(engine.observe(_view(20, session="s2"))) == 1  # another session may fire


# -- cart idle ----------------------------------------------------------------------------
def test_an_idle_cart_fires_after_30_minutes_once() -> None:
    engine = TriggerEngine(RULES)
    engine.observe(_event("add_to_cart", 100, product="p7"))
    assert engine.due(now=100 + 1_799) == []
    [fire] = engine.due(now=100 + 1_800)
    assert (fire.kind, fire.key) == ("cart_idle", "cart_idle:c1:s1")
    assert fire.context["cart_product_ids"] == "p7" and fire.context["idle_s"] == 1_800
    assert engine.due(now=10_000) == []
    engine.observe(_event("add_to_cart", 10_000, product="p8"))  # same session, same window
    assert engine.due(now=20_000) == []


def test_checkout_or_purchase_cancels_the_cart_reminder() -> None:
    for ending in ("checkout", "purchase"):
        engine = TriggerEngine(RULES)
        engine.observe(_event("add_to_cart", 0))
        engine.observe(_event(ending, 600))
        assert engine.due(now=3_600) == [], ending


def test_activity_in_the_session_postpones_the_reminder() -> None:
    engine = TriggerEngine(RULES)
    engine.observe(_event("add_to_cart", 0))
    engine.observe(_event("page_view", 1_000))
    assert engine.due(now=1_800) == []
    assert engine.due(now=2_799) == []
    assert [f.key for f in engine.due(now=2_800)] == ["cart_idle:c1:s1"]


def test_a_cart_in_another_session_is_its_own_key() -> None:
    engine = TriggerEngine(RULES)
    engine.observe(_event("add_to_cart", 0, session="a"))
    engine.observe(_event("add_to_cart", 0, session="b"))
    engine.observe(_event("checkout", 10, session="b"))
    assert [f.key for f in engine.due(now=2_000)] == ["cart_idle:c1:a"]


# -- return after -------------------------------------------------------------------------
def test_a_return_after_90_days_fires_once() -> None:
    engine = TriggerEngine(RULES)
    assert engine.observe(_event("page_view", 0)) == []
    assert engine.observe(_event("page_view", 89 * DAY, session="s2")) == []
    assert engine.observe(_event("page_view", 89 * DAY + 10, session="s3")) == []
    [fire] = engine.observe(_event("page_view", 179.5 * DAY, session="s4"))
    assert (fire.kind, fire.key) == ("return_after", "win_back:c1")
    assert fire.context["gap_days"] == pytest.approx(90.5, abs=1e-3)
    assert engine.observe(_event("page_view", 179.5 * DAY + 5, session="s4")) == []


def test_return_after_asks_last_seen_once_per_customer() -> None:
    asked: list[str] = []

    def last_seen(customer_id: str) -> datetime | None:
        asked.append(customer_id)
        return datetime(2026, 1, 1, tzinfo=UTC) if customer_id == "old" else None

    engine = TriggerEngine(RULES, last_seen=last_seen)
    now = datetime(2026, 6, 1, tzinfo=UTC).isoformat()
    fires = engine.observe({"type": "page_view", "customer_id": "old", "ts": now})
    assert [f.key for f in fires] == ["win_back:old"]
    assert engine.observe({"type": "page_view", "anonymous_id": "v1", "ts": now}) == []
    engine.observe({"type": "page_view", "customer_id": "old", "ts": now})
    assert asked == ["old", "v1"]


class _Outage(MemoryOnceStore):
    """The memory store, made unreachable while ``down`` (as Redis is in an outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def claim(self, key: str, ttl_s: float, now: float) -> bool:
        if self.down:
            raise ConnectionError("once-store unreachable")
        return super().claim(key, ttl_s, now)


def test_a_fire_found_while_the_store_is_down_goes_out_with_the_retry() -> None:
    store = _Outage()
    engine = TriggerEngine(RULES, store)
    engine.observe(_event("page_view", 0))
    engine.observe(_event("add_to_cart", 100 * DAY, customer="c2"))
    store.down = True
    with pytest.raises(ConnectionError):  # the service answers 503: retry
        engine.observe(_event("page_view", 100 * DAY))  # the session state has moved on
    with pytest.raises(ConnectionError):
        engine.due(now=100 * DAY + 1_800)  # the cart's timer has been popped
    assert engine.pending == 2
    store.down = False
    fired = engine.observe(_event("page_view", 100 * DAY))  # the retry
    assert sorted(f.key for f in fired) == ["cart_idle:c2:s1", "win_back:c1"]
    assert engine.pending == 0
    assert engine.observe(_event("page_view", 100 * DAY + 9)) == []  # once, as before


def test_held_fires_do_not_refuse_an_event_that_fires_nothing() -> None:
    store = _Outage()
    engine = TriggerEngine(RULES, store)
    engine.observe(_event("page_view", 0))
    store.down = True
    with pytest.raises(ConnectionError):
        engine.observe(_event("page_view", 100 * DAY))
    assert engine.observe(_event("page_view", 100 * DAY, customer="c9")) == []  # not refused
    assert asyncio.run(engine.aobserve(_event("page_view", 100 * DAY, customer="c8"))) == []
    assert engine.pending == 1
    store.down = False
    assert [f.key for f in engine.due(now=100 * DAY + 1)] == ["win_back:c1"]


def test_fires_held_by_the_caller_go_out_with_the_next_call() -> None:
    engine = TriggerEngine(RULES)
    [won] = engine.observe(_view(0))  # claimed, then the caller failed before acting on it
    engine.hold([won])
    assert [f.key for f in engine.observe(_event("page_view", 5, customer="c2"))] == [
        "long_dwell:c1:p1"]


def test_a_fire_won_before_the_store_failed_is_not_lost() -> None:
    class _FailsSecond(MemoryOnceStore):
        calls = 0

        def claim(self, key: str, ttl_s: float, now: float) -> bool:
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("once-store unreachable")
            return super().claim(key, ttl_s, now)

    engine = TriggerEngine(RULES, _FailsSecond())
    engine.observe(_event("page_view", 0))
    with pytest.raises(ConnectionError):  # the win-back is claimed, then the dwell fails
        engine.observe(_view(100 * DAY))
    fired = asyncio.run(engine.aobserve(_event("page_view", 100 * DAY + 1)))
    assert sorted(f.key for f in fired) == ["long_dwell:c1:p1", "win_back:c1"]


# -- once stores --------------------------------------------------------------------------
def test_redis_once_store_fires_once_across_two_engines(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"test:once:{uuid.uuid4().hex}:"
    try:
        engines = [TriggerEngine(RULES, RedisOnceStore(client, prefix=prefix)) for _ in "ab"]
        fires = [f for e in engines for f in e.observe(_view(0))]
        assert [f.key for f in fires] == ["long_dwell:c1:p1"]
        for engine in engines:
            engine.observe(_event("add_to_cart", 0, session="s9"))
        assert len([f for e in engines for f in e.due(now=1_800)]) == 1
        ttl_ms = client.pttl(prefix + "long_dwell:c1:p1")
        assert DAY * 1000 - 60_000 < ttl_ms <= DAY * 1000
    finally:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


def test_awaited_claims_fire_once_across_engines_sync_and_async(redis_url: str) -> None:
    import redis
    import redis.asyncio

    prefix = f"test:once:{uuid.uuid4().hex}:"

    async def run() -> tuple[list[str], list[str], int]:
        client = redis.Redis.from_url(redis_url)
        store = RedisOnceStore(client, async_client=redis.asyncio.Redis.from_url(redis_url),
                               prefix=prefix)
        threaded = RedisOnceStore(client, prefix=prefix)  # no async client: a thread claims
        engines = [TriggerEngine(RULES, store), TriggerEngine(RULES, threaded),
                   TriggerEngine(RULES, RedisOnceStore(client, prefix=prefix))]
        try:
            views = await asyncio.gather(engines[0].aobserve(_view(0)),
                                         engines[1].aobserve(_view(0)))
            views.append(engines[2].observe(_view(0)))  # the sync path shares the keys
            for engine in engines:
                engine.observe(_event("add_to_cart", 0, session="s9"))
            carts = [*await engines[0].adue(now=1_800), *await engines[1].adue(now=1_800),
                     *engines[2].due(now=1_800)]
            return ([f.key for fired in views for f in fired], [f.key for f in carts],
                    len(list(client.scan_iter(prefix + "*"))))
        finally:
            keys = list(client.scan_iter(prefix + "*"))
            if keys:
                client.delete(*keys)
            await store.aclose()

    views, carts, held = asyncio.run(run())
    assert views == ["long_dwell:c1:p1"] and carts == ["cart_idle:c1:s9"] and held == 2


def test_memory_store_claims_are_awaited_alike() -> None:
    engine = TriggerEngine(RULES)
    first = asyncio.run(engine.aobserve(_view(0)))
    again = asyncio.run(engine.aobserve(_view(60)))
    assert [f.key for f in first] == ["long_dwell:c1:p1"] and again == []


@given(gaps=st.lists(st.floats(min_value=0, max_value=3 * DAY), min_size=1, max_size=40),
       window=st.floats(min_value=1, max_value=2 * DAY))
@example(gaps=[0, DAY, 0], window=DAY)  # a view exactly one window after the fire fires
def test_a_dwell_fires_once_per_window(gaps: list[float], window: float) -> None:
    rule = DwellRule(name="d", window_s=window)
    engine = TriggerEngine([rule], MemoryOnceStore())
    times, t = [], 0.0
    for gap in gaps:
        t += gap
        times.append(t)
    fired = [t for t in times if engine.observe(_view(t))]
    expected, last = [], None  # a fire opens a window; the first view after it fires again
    for t in times:
        if last is None or t >= last + window:
            expected.append(t)
            last = t
    assert fired == expected


# -- config, input and memory -------------------------------------------------------------
def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=re.escape(
        "triggers[1].min_dwel_ms: expected only the fields of the rule's kind; "
        "found unknown field 'min_dwel_ms'."
    )):
        load_triggers({"rules": [{"kind": "cart_idle", "name": "c"},
                                 {"kind": "dwell", "name": "d", "min_dwel_ms": 1}]})
    with pytest.raises(ConfigError, match=re.escape(
        "triggers[0].kind: expected kind 'dwell', 'cart_idle' or 'return_after'; found 'idle'."
    )):
        load_triggers([{"kind": "idle", "name": "x"}])
    with pytest.raises(ConfigError, match=re.escape(
        "triggers: expected unique rule names; found ['x'] repeated."
    )):
        load_triggers([{"kind": "dwell", "name": "x"}, {"kind": "cart_idle", "name": "x"}])


def test_defaults_follow_the_issue() -> None:
    assert TriggerEngine().rules == (DwellRule(name="long_dwell"),
                                     CartIdleRule(name="cart_idle"),
                                     ReturnAfterRule(name="win_back"))
    assert (DwellRule(name="x").min_dwell_ms, CartIdleRule(name="x").idle_s,
            ReturnAfterRule(name="x").min_gap_days) == (30_000, 1_800, 90)


def test_an_idle_longer_than_a_session_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected less than session_ttl_s=3600; found 7200"):
        TriggerEngine([CartIdleRule(name="c", idle_s=7_200)], session_ttl_s=3_600)


def test_events_without_ids_are_schema_errors() -> None:
    engine = TriggerEngine(RULES)
    with pytest.raises(SchemaError, match=re.escape(
        "trigger event of type 'page_view': expected a 'customer_id' or 'anonymous_id'; "
        "found keys ['ts', 'type']."
    )):
        engine.observe({"type": "page_view", "ts": 0})
    with pytest.raises(SchemaError, match="expected a 'type'"):
        engine.observe({"customer_id": "c1"})


def test_session_state_is_bounded_by_count_and_age() -> None:
    engine = TriggerEngine(RULES, max_sessions=50, session_ttl_s=3_600)
    for i in range(500):
        engine.observe(_event("page_view", i, customer=f"c{i}", session=f"s{i}"))
    assert len(engine) == 50
    engine.observe(_event("page_view", 10_000, customer="late"))
    assert len(engine) == 1  # the others went quiet for more than an hour
