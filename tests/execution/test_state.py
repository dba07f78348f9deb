"""The state stores agree: in-process and Redis give the same answer to every operation.

A decision's one state call, :meth:`select`, is a Lua script in Redis and plain Python in
process; hypothesis draws sequences of consent changes and selections for a few customers
and campaigns and both stores must answer each step identically, counters included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketloop.execution.config import Limits
from marketloop.execution.state import (
    BUDGET,
    CAP_DAY,
    NO_CONSENT,
    QUIET,
    RESERVED,
    UNTRIED,
    ChannelOption,
    MemoryState,
    RedisState,
)

pytestmark = pytest.mark.redis

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
CUSTOMERS = ("a", "b")
CHANNELS = ("email", "sms", "push", "app")

option = st.builds(
    lambda c, quiet: ChannelOption(
        c,
        "personalisation" if c == "app" else "marketing",
        lenient=c == "app",
        quiet=quiet and c != "app",
        contact=c != "app",
    ),
    st.sampled_from(CHANNELS),
    st.booleans(),
)
consent_step = st.tuples(
    st.just("consent"),
    st.sampled_from(CUSTOMERS),
    st.sampled_from(CHANNELS),
    st.booleans(),
)
select_step = st.tuples(
    st.just("select"),
    st.sampled_from(CUSTOMERS),
    st.lists(option, min_size=1, max_size=4, unique_by=lambda o: o.channel),
    st.integers(0, 400),  # cost in cents
    st.one_of(st.none(), st.integers(0, 1_500)),  # budget in cents
    st.integers(0, 8),  # day offset: moves the day and week caps
)


async def _run(steps: list[tuple], redis_url: str) -> tuple[list, list]:
    limits = Limits(per_day=2, per_week=3)
    memory = MemoryState(limits)
    redis = RedisState(redis_url, limits, prefix=f"t{uuid.uuid4().hex[:10]}")
    answers: tuple[list, list] = ([], [])
    try:
        for step in steps:
            for store, out in zip((memory, redis), answers, strict=True):
                if step[0] == "consent":
                    _, customer, channel, granted = step
                    purpose = "personalisation" if channel == "app" else "marketing"
                    await store.set_consent(customer, channel, purpose, granted)
                    continue
                _, customer, options, cost, budget, day = step
                now = NOW + dt.timedelta(days=day)
                got = await store.select(customer, options, "spring", cost, budget, now)
                out.append((got, await store.spent("spring"), await store.contacts(customer, now)))
    finally:
        await redis.close()
    return answers


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.one_of(consent_step, select_step), min_size=1, max_size=25))
def test_memory_and_redis_select_agree(steps: list[tuple], redis_url: str) -> None:
    memory, redis = asyncio.run(_run(steps, redis_url))
    assert memory == redis
    for got, _, _ in memory:
        assert got.count(RESERVED) <= 1


def test_select_reports_every_channel(redis_url: str) -> None:
    async def scenario(store) -> list[list[str]]:  # noqa: ANN001 - either store
        await store.set_consent("c", "email", "marketing", True)
        await store.set_consent("c", "sms", "marketing", True)
        opts = [
            ChannelOption("push", "marketing"),
            ChannelOption("sms", "marketing", quiet=True),
            ChannelOption("email", "marketing"),
            ChannelOption("app", "personalisation", lenient=True, contact=False),
        ]
        out = [await store.select("c", opts, "x", 100, 250, NOW) for _ in range(3)]
        tomorrow = NOW + dt.timedelta(days=1)  # the day cap is free again, the budget is not
        out.append(await store.select("c", opts[2:], "x", 100, 250, tomorrow))
        try:
            return out
        finally:
            await store.close()

    for store in (
        MemoryState(Limits(per_day=1, per_week=5)),
        RedisState(redis_url, Limits(per_day=1, per_week=5), prefix=f"t{uuid.uuid4().hex[:10]}"),
    ):
        first, second, third, fourth = asyncio.run(scenario(store))
        assert first == [NO_CONSENT, QUIET, RESERVED, UNTRIED]  # email is first eligible
        assert second == [NO_CONSENT, QUIET, CAP_DAY, RESERVED]  # capped: in-app takes it
        assert third == [NO_CONSENT, QUIET, CAP_DAY, BUDGET]  # 200 of 250 cents spent
        assert fourth == [BUDGET, UNTRIED]  # the budget refuses every channel: none is tried


def test_a_refused_choice_is_answered_with_the_propensity_of_what_is_done() -> None:
    """With exploration on, the logged propensity is that of the action actually taken."""
    from marketloop.execution.config import ServiceConfig
    from marketloop.execution.decide import Decider, Request

    config = ServiceConfig(epsilon=0.5, budgets={"default": 0.0})  # no offer is affordable
    decider = Decider(config, MemoryState(config.limits))
    seen = {"offer": 0, "nothing": 0}
    for i in range(200):
        request = Request(f"c{i}", True, {"dwell_ms": 45_000}, decision_id=f"d{i}")
        d = asyncio.run(decider.decide(request))
        assert d.action == "nothing"
        if d.chosen is None:  # the holdout: nothing was the policy's own choice
            assert d.propensity == d.chosen_propensity == 0.25 and not d.refused
            seen["nothing"] += 1
        else:  # the offer, refused by the budget: nothing is done whatever was chosen
            assert d.propensity == 1.0 and d.chosen_propensity == 0.75 and d.refused
            assert d.reasons[-1] == "refused app: budget exhausted"
            seen["offer"] += 1
    assert min(seen.values()) > 20
