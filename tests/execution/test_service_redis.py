"""Four workers sharing real Redis under 50 concurrent clients: no budget overspent, no cap
exceeded; the decision log of all four lands in PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from _server import served

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
N_CUSTOMERS, N_CLIENTS, PER_CLIENT = 100, 50, 24

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


async def _storm(url: str, customers: list[str], campaign: str) -> list[dict]:
    """50 clients, each deciding for customers in its own order, all at once."""
    limits = httpx.Limits(max_connections=N_CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=30) as c:
        async def client(k: int) -> list[dict]:
            out = []
            for j in range(PER_CLIENT):
                cid = customers[(k * 7 + j * 13) % len(customers)]
                r = await c.post("/v1/decide", json={
                    "customer_id": cid, "context": {"trigger": "return_after"},
                    "channels": ["email"], "campaign": campaign})
                assert r.status_code == 200, r.text
                out.append(r.json())
            return out
        results = await asyncio.gather(*(client(k) for k in range(N_CLIENTS)))
    return [d for batch in results for d in batch]


def test_four_workers_never_overspend_or_exceed_a_cap(tmp_path: Path, redis_url: str,
                                                        pg_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    budgeted, capped = f"b{run}", f"c{run}"
    config = f"""
[service]
epsilon = 0.0
state_timeout_s = 5.0
warehouse_url = "{pg_url}"
budgets = {{ {budgeted} = 40.0, {capped} = 1000000.0 }}
limits = {{ per_day = 1, per_week = 3, quiet_start = 0, quiet_end = 0 }}
"""
    customers = [f"{run}-{i}" for i in range(N_CUSTOMERS)]
    with served(tmp_path, "--workers", "4", "--state", redis_url, key=KEY,
                config=config) as url:
        with httpx.Client(base_url=url, headers=AUTH) as c:
            for cid in customers:
                r = c.put(f"/v1/customers/{cid}/consents",
                          json={"channel": "email", "purpose": "marketing", "granted": True})
                assert r.status_code == 200
        # pct10 costs 2.00: a 40.00 budget pays for exactly 20 e-mails, whoever races
        first = asyncio.run(_storm(url, customers, budgeted))
        sent = [d for d in first if d["action"] is not None]
        assert len(first) == N_CLIENTS * PER_CLIENT
        assert not any(d["degraded"] for d in first)
        assert len(sent) == 20
        assert Counter(d["customer_id"] for d in sent).most_common(1)[0][1] == 1
        refusals = Counter(d["reasons"][-1] for d in first if d["action"] is None)
        assert set(refusals) <= {"refused email: budget exhausted", "refused email: cap per day"}
        # an ample budget: the cap of one e-mail a day is the limit; the 20 above count
        second = asyncio.run(_storm(url, customers, capped))
        sent2 = [d for d in second if d["action"] is not None]
        per_customer = Counter(d["customer_id"] for d in first + second
                               if d["action"] is not None)
        assert max(per_customer.values()) == 1
        assert len(sent2) == N_CUSTOMERS - 20
        health = httpx.get(f"{url}/healthz").json()
        assert health["state"] == {"kind": "redis", "reachable": True}
    import redis

    spent = redis.Redis.from_url(redis_url).get(f"ml:spent:{budgeted}")
    assert int(spent) == 4_000  # cents: exactly the budget, never more
    import psycopg

    with psycopg.connect(pg_url.split("?")[0], options=_options(pg_url)) as con:
        logged = con.execute("SELECT count(*), count(DISTINCT decision_id) FROM decisions "
                             "WHERE customer_id LIKE %s", (f"{run}-%",)).fetchone()
    assert logged == (2 * N_CLIENTS * PER_CLIENT, 2 * N_CLIENTS * PER_CLIENT)


def _options(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query).get("options", [""])[0]
