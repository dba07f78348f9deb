"""The service's messages through the outbox to real providers: a real SMTP server, the
in-app inbox; consent revoked cancels what is queued; nothing is lost across a restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import httpx
import pytest
from _server import free_port, served
from aiosmtpd.controller import Controller

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _config(smtp_port: int) -> str:
    return f"""
[service]
epsilon = 0.0
limits = {{ per_day = 5, per_week = 10, quiet_start = 0, quiet_end = 0 }}

[service.channels.email]
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
sender = "shop@example.test"
timeout_s = 2
"""


def _wait(check, timeout: float = 20.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def _consent(c: httpx.Client, cid: str, granted: bool = True) -> dict:
    r = c.put(f"/v1/customers/{cid}/consents", json={
        "channel": "email", "purpose": "marketing", "granted": granted,
        "address": f"{cid}@example.test"})
    assert r.status_code == 200, r.text
    return r.json()


def _win_back(c: httpx.Client, cid: str) -> dict:
    r = c.post("/v1/decide", json={"customer_id": cid, "context": {"trigger": "return_after"},
                                   "channels": ["email"]})
    assert r.status_code == 200, r.text
    return r.json()


def test_an_email_decision_reaches_a_real_smtp_server(tmp_path: Path) -> None:
    handler = _Inbox()
    port = free_port()
    smtp = Controller(handler, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with served(tmp_path, key=KEY, config=_config(port)) as url, \
                httpx.Client(base_url=url, headers=AUTH) as c:
            _consent(c, "cust-1")
            d = _win_back(c, "cust-1")
            assert d["action"]["channel"] == "email" and d["action"]["dispatch"] == "queued"
            assert _wait(lambda: handler.messages)
            rcpt, content = handler.messages[0]
            assert rcpt == ["cust-1@example.test"]
            assert b"10% off" in content and d["decision_id"].encode() in content
            health = c.get("/healthz").json()
            assert health["outbox"]["sent"] == 1
    finally:
        smtp.stop()


def test_a_dwell_event_puts_an_offer_in_the_in_app_inbox(tmp_path: Path) -> None:
    with served(tmp_path, key=KEY, config=_config(free_port())) as url, \
            httpx.Client(base_url=url, headers=AUTH) as c:
        r = c.post("/v1/events", json={"events": [
            {"type": "page_view", "customer_id": "shopper", "session_id": "s9"},
            {"type": "product_view", "customer_id": "shopper", "session_id": "s9",
             "product_id": "p42", "dwell_ms": 35_000}]})
        assert r.status_code == 202
        fired = r.json()["fired"]
        assert [(f["rule"], f["action"]["offer"], f["action"]["channel"], f["dispatch"])
                for f in fired] == [("long_dwell", "pct10", "app", "queued")]
        decided = c.get(f"/v1/decisions/{fired[0]['decision_id']}").json()
        assert fired[0]["action"] == decided["action"]  # the same shape as POST /v1/decide
        assert fired[0]["reasons"] == decided["reasons"]
        messages = _wait(lambda: c.get("/v1/customers/shopper/inbox").json()["messages"])
        assert messages[0]["payload"]["product_id"] == "p42"
        again = c.post("/v1/events", json={"type": "product_view", "customer_id": "shopper",
                                           "session_id": "s9", "product_id": "p42",
                                           "dwell_ms": 60_000})
        assert again.json()["fired"] == []  # once per key and window


def test_consent_revoked_cancels_the_queued_message_and_nothing_is_sent(tmp_path: Path) -> None:
    handler = _Inbox()
    port = free_port()  # no SMTP server yet: the message waits in the outbox
    with served(tmp_path, key=KEY, config=_config(port)) as url, \
            httpx.Client(base_url=url, headers=AUTH) as c:
        _consent(c, "cust-2")
        assert _win_back(c, "cust-2")["action"]["dispatch"] == "queued"
        revoked = _consent(c, "cust-2", granted=False)
        assert revoked["cancelled"] == 1
        smtp = Controller(handler, hostname="127.0.0.1", port=port)
        smtp.start()
        try:
            time.sleep(3)  # past the first retry's backoff
            assert handler.messages == []
            assert c.get("/healthz").json()["outbox"]["cancelled"] == 1
        finally:
            smtp.stop()


def test_a_message_queued_before_a_restart_is_delivered_after_it(tmp_path: Path) -> None:
    handler = _Inbox()
    port = free_port()
    with served(tmp_path, key=KEY, config=_config(port)) as url, \
            httpx.Client(base_url=url, headers=AUTH) as c:
        _consent(c, "cust-3")
        decision = _win_back(c, "cust-3")
        assert decision["action"]["dispatch"] == "queued"
    # the service stopped with the provider down; the outbox file keeps the message
    smtp = Controller(handler, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with served(tmp_path, key=KEY, config=_config(port)):
            assert _wait(lambda: handler.messages, timeout=40)
        assert [m[0] for m in handler.messages] == [["cust-3@example.test"]]
    finally:
        smtp.stop()


@pytest.mark.redis
def test_events_are_refused_not_dropped_when_trigger_state_is_down(tmp_path: Path) -> None:
    with served(tmp_path, "--state", "redis://127.0.0.1:6399/0", key=KEY) as url:
        r = httpx.post(f"{url}/v1/events", headers=AUTH, json={
            "type": "product_view", "customer_id": "c", "dwell_ms": 40_000})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "trigger state unreachable" in r.json()["error"]


@contextmanager
def _redis_server(port: int, tmp: Path) -> Iterator[subprocess.Popen]:
    """A redis-server of this test's own on ``port``, which the test may stop and restart."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: _answers(port), timeout=10), "redis-server did not start"
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.redis
def test_a_win_back_refused_in_a_redis_outage_fires_on_the_retry(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; `bash scripts/services.sh start` installs it")
    port = free_port()
    visit = {"type": "page_view", "customer_id": "wb1", "session_id": "later",
             "ts": "2026-06-01T10:00:00Z"}
    with _redis_server(port, tmp_path) as redis_proc, \
            served(tmp_path, "--state", f"redis://127.0.0.1:{port}/0", key=KEY) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        first = {"type": "page_view", "customer_id": "wb1", "session_id": "early",
                 "ts": "2026-01-02T10:00:00Z"}
        assert c.post("/v1/events", json=first).status_code == 202
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        r = c.post("/v1/events", json=visit)  # 150 days later: the win-back's claim fails
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        with _redis_server(port, tmp_path):
            retry = c.post("/v1/events", json=visit)
            assert retry.status_code == 202, retry.text
            fired = retry.json()["fired"]  # or the timer tick, a second later, sent it
            time.sleep(2.5)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        logged = con.sql("select reasons from decisions where customer_id = 'wb1'").fetchall()
    finally:
        con.close()
    assert len(logged) == 1, (fired, logged)
    assert "return_after" in str(logged[0][0]) or [f["kind"] for f in fired] == ["return_after"]


def test_the_channel_the_customer_answers_goes_first(tmp_path: Path) -> None:
    """Push converted five times of five for this customer, e-mail never: push goes first."""
    import datetime as dt

    import pandas as pd

    from marketloop.data.warehouse import connect, ensure_warehouse

    con = connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_warehouse(con)
    ts = dt.datetime(2026, 11, 1)
    rows = [(f"d{c}{i}", "fan", ts, "rules", f"pct10@{c}", 1.0, None)
            for c in ("push", "email") for i in range(5)]
    con.insert("decisions", pd.DataFrame(rows, columns=[
        "decision_id", "customer_id", "ts", "policy", "action", "propensity", "reasons"]))
    con.insert("outcomes", pd.DataFrame({"decision_id": [f"dpush{i}" for i in range(5)],
                                         "kind": "conversion", "ts": ts, "value": 1.0}))
    con.disconnect()
    with served(tmp_path, key=KEY, config=_config(free_port())) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        for channel in ("email", "push"):
            assert c.put("/v1/customers/fan/consents", json={
                "channel": channel, "purpose": "marketing", "granted": True}).status_code == 200
        d = c.post("/v1/decide", json={"customer_id": "fan",
                                       "context": {"trigger": "return_after"}}).json()
        assert d["action"]["channel"] == "push"
        assert any(r.startswith("channels ordered by this customer's response: push")
                   for r in d["reasons"])
        other = c.post("/v1/decide", json={"customer_id": "stranger",
                                           "context": {"trigger": "return_after"}}).json()
        assert "channels ordered" not in " ".join(other["reasons"])
