"""The decision service over HTTP: a real ``marketloop serve``, real requests.

Auth and scopes, rules-based decisions for known and unknown customers, consent, quiet
hours, caps and budgets, request ids, Prometheus metrics, bad input (4xx naming the field,
never a 5xx), the decision log in the warehouse, and degraded answers when Redis is down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from _server import served
from prometheus_client.parser import text_string_to_metric_families

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONFIG = """
[service]
epsilon = 0.0
budgets = { default = 1000.0, small = 5.0 }
limits = { per_day = 1, per_week = 3, quiet_start = 0, quiet_end = 0 }

[[service.api_keys]]
key = "events-only-key-0123"
name = "tracker"
scopes = ["events:write"]
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("serve")
    with served(tmp, key=KEY, config=CONFIG) as url:
        yield url, tmp


@pytest.fixture
def client(service) -> httpx.Client:
    url, _ = service
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
        yield c


def _decide(client: httpx.Client, **body: object) -> dict:
    r = client.post("/v1/decide", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_keys_and_scopes(service) -> None:
    url, _ = service
    body = {"customer_id": "c1", "context": {}}
    assert httpx.post(f"{url}/v1/decide", json=body).status_code == 401
    wrong = httpx.post(f"{url}/v1/decide", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.json()["error"]
    tracker = {"X-API-Key": "events-only-key-0123"}
    refused = httpx.post(f"{url}/v1/decide", json=body, headers=tracker)
    assert refused.status_code == 403 and "'decide'" in refused.json()["error"]
    ok = httpx.post(f"{url}/v1/events", json={"type": "page_view", "customer_id": "c1"},
                    headers=tracker)
    assert ok.status_code == 202 and ok.json()["accepted"] == 1
    assert httpx.post(f"{url}/v1/decide", json=body,
                      headers={"X-API-Key": KEY}).status_code == 200
    behind_proxy = {"Authorization": "Basic Zm9vOmJhcg==", "X-API-Key": KEY}
    assert httpx.post(f"{url}/v1/decide", json=body, headers=behind_proxy).status_code == 200
    both = httpx.post(f"{url}/v1/decide", json=body,
                      headers={"Authorization": "Bearer nope", "X-API-Key": KEY})
    assert both.status_code == 401 and "two different API keys" in both.json()["error"]


def test_a_long_dwell_gets_an_in_app_offer_with_its_propensity(client) -> None:
    r = client.post("/v1/decide", json={"customer_id": "c-dwell",
                                        "context": {"dwell_ms": 42_000, "product_id": "p7"}},
                    headers={"X-Request-ID": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    d = r.json()
    assert d["request_id"] == "req-123"
    assert d["action"]["offer"] == "pct10" and d["action"]["channel"] == "app"
    assert d["action"]["product_id"] == "p7"
    assert d["propensity"] == 1.0 and d["degraded"] is False
    assert any(line.startswith("rule dwell") for line in d["reasons"])
    assert client.get(f"/v1/decisions/{d['decision_id']}").json()["action"] == d["action"]


def test_new_visitors_and_no_rule(client) -> None:
    new = _decide(client, anonymous_id="v-1", context={"dwell_ms": 31_000})
    assert new["customer_id"] == "anon:v-1" and new["action"]["offer"] == "freeship"
    idle = _decide(client, customer_id="c-browse", context={"page": "home"})
    assert idle["action"] is None and "no rule applies" in idle["reasons"][0]


def test_email_needs_consent_and_counts_against_the_cap(client) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    body = {"customer_id": cid, "context": {"trigger": "cart_idle"},
            "channels": ["email"]}
    first = _decide(client, **body)
    assert first["action"] is None and "email: no marketing consent" in first["reasons"][-1]
    for loose in ("yes", 1, "true"):  # consent is given as true, never inferred from text
        r = client.put(f"/v1/customers/{cid}/consents",
                       json={"channel": "email", "purpose": "marketing", "granted": loose})
        assert r.status_code == 422 and r.json()["field"] == "granted", r.text
    r = client.put(f"/v1/customers/{cid}/consents",
                   json={"channel": "email", "purpose": "marketing", "granted": True})
    assert r.status_code == 200
    sent = _decide(client, **body)
    assert sent["action"] == {**sent["action"], "offer": "reminder", "channel": "email"}
    capped = _decide(client, **body)
    assert capped["action"] is None and capped["reasons"][-1] == "refused email: cap per day"
    # nothing is done whatever the policy chose: the answer's propensity is 1, its choice kept
    assert capped["chosen"] == "reminder" and capped["propensity"] == 1.0
    assert capped["chosen_propensity"] == 1.0 and sent["chosen"] == "reminder"  # epsilon 0
    assert sent["propensity"] == sent["chosen_propensity"]
    # in-app messages are shown on the site and do not count against the caps
    on_site = _decide(client, customer_id=cid, context={"trigger": "cart_idle"})
    assert on_site["action"]["channel"] == "app"


def test_a_campaign_budget_is_never_overspent(client) -> None:
    spent = 0.0
    for i in range(6):  # pct10 costs 2.00; the 'small' campaign has 5.00
        d = _decide(client, customer_id=f"b{i}", context={"dwell_ms": 60_000},
                    campaign="small")
        if d["action"] is not None:
            spent += 2.0
        else:
            assert d["reasons"][-1] == "refused app: budget exhausted"
    assert spent == 4.0


def test_a_campaign_without_a_budget_gets_nothing(client) -> None:
    d = _decide(client, customer_id="nb1", context={"dwell_ms": 60_000}, campaign="nowhere")
    assert d["action"] is None and d["propensity"] == 1.0
    assert "campaign 'nowhere' has no budget" in d["reasons"][-1]


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/v1/decide", b'{"customer_id": "c1",', 400, "malformed JSON"),
    ("/v1/decide", b'{"context": {}}', 422, "customer_id or anonymous_id is required"),
    ("/v1/decide", b'{"customer_id": "c1", "colour": 1}', 422, "colour"),
    ("/v1/decide", b'{"customer_id": "c1", "channels": ["fax"]}', 422, "channels.0"),
    ("/v1/decide", b'[1, 2]', 422, "body"),
    ("/v1/events", b'{"type": "teleport", "customer_id": "c1"}', 422, "type"),
    ("/v1/events", b'{"events": []}', 422, "events"),
    ("/v1/events", b'{"type": "product_view", "customer_id": "c1", "dwell_ms": -5}', 422,
     "dwell_ms"),
    ("/v1/outcomes", b'{"decision_id": "d1", "kind": "love"}', 422, "kind"),
    ("/v1/events", b'{"type": "page_view", "customer_id": "c1", '
                   b'"ts": "9999-12-31T23:59:59-01:00"}', 422, "ts"),
    ("/v1/outcomes", b'{"decision_id": "d1", "kind": "click", '
                     b'"ts": "0001-01-01T00:00:00+01:00"}', 422, "ts"),
    # a customer id in the visitors' key space would share their triggers and caps
    ("/v1/decide", b'{"customer_id": "anon:v77"}', 422, "not starting with 'anon:'"),
    ("/v1/events", b'{"type": "page_view", "customer_id": "anon:v77"}', 422, "customer_id"),
    # an event from the future would age every trigger session past its end
    ("/v1/events", b'{"type": "page_view", "customer_id": "c1", '
                   b'"ts": "9999-01-01T00:00:00Z"}', 422, "no later than an hour"),
    # no coercion from text: the trigger would count what the decider does not
    ("/v1/events", b'{"type": "product_view", "customer_id": "c1", "dwell_ms": "40000"}', 422,
     "dwell_ms"),
])
def test_bad_input_is_a_4xx_naming_the_field(client, path: str, body: bytes, status: int,
                                            words: str) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    out = r.json()
    assert words in out["error"] and out["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize(("body", "content_type", "words"), [
    (b"", "application/json", "body: Field required"),
    (b'{"customer_id": "c1"}', "text/plain", "found Content-Type 'text/plain'"),
    (b'{"customer_id": "c1"}', None, "expected a JSON body"),
])
def test_a_body_that_is_not_json_is_422(client, body: bytes, content_type: str | None,
                                        words: str) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/v1/decide", content=body, headers=headers)
    assert r.status_code == 422 and words in r.json()["error"], r.text
    ok = client.post("/v1/decide", content=b'{"customer_id": "c1"}',
                     headers={"content-type": "application/merge-patch+json; charset=utf-8"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "bogus", "customer_id": "c1"}, "type"),
    ({"type": "product_view", "customer_id": "c1", "dwell_ms": -1}, "dwell_ms"),
    ({"events": [{"type": "page_view", "customer_id": "c1"}, {"customer_id": "c1"}]},
     "events.1.type"),
])
def test_an_event_error_names_the_field_as_sent(client, body: dict, field: str) -> None:
    r = client.post("/v1/events", json=body)
    assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_an_oversized_batch_is_413(client) -> None:
    events = [{"type": "page_view", "customer_id": "c1"}] * 1_001
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 413 and "at most 1000 events" in r.json()["error"]


def test_metrics_are_prometheus_text(client) -> None:
    _decide(client, customer_id="m1", context={"dwell_ms": 40_000})
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "marketloop_decide_seconds" in families
    decided = sum(s.value for s in families["marketloop_decisions"].samples
                  if s.name.endswith("_total"))
    assert decided >= 1


def test_decisions_and_outcomes_land_in_the_warehouse(tmp_path: Path) -> None:
    with served(tmp_path, key=KEY) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        answers = [_decide(c, customer_id=f"w{i}", context={"dwell_ms": 50_000})
                   for i in range(20)]
        ids = [a["decision_id"] for a in answers]
        outcomes = {"outcomes": [
            {"decision_id": ids[0], "kind": "conversion", "value": 1.0},
            {"decision_id": ids[1], "kind": "revenue", "value": 42.5,
             "ts": dt.datetime(2026, 12, 1, tzinfo=dt.UTC).isoformat()}]}
        assert c.post("/v1/outcomes", json=outcomes).status_code == 202
        view = {"type": "product_view", "customer_id": "w0", "product_id": "p1",
                "dwell_ms": 50_000, "session_id": "s1", "event_id": "e-w0-1"}
        r = c.post("/v1/events", json=view)
        fired = r.json()["fired"]  # a long dwell: the dwell trigger decides too
        time.sleep(1.0)  # the first copies are written; the retries below add nothing
        assert c.post("/v1/outcomes", json=outcomes).status_code == 202
        assert c.post("/v1/events", json={"events": [view, view]}).status_code == 202
        assert [f["rule"] for f in fired] == ["long_dwell"]
        ids.append(fired[0]["decision_id"])
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    rows = con.sql("SELECT decision_id, action, propensity, reasons FROM decisions").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(r[1] in ("pct10@app", "nothing") and 0 < r[2] <= 1 for r in rows)
    assert '"rule dwell: pct10"' in rows[0][3]
    for _, action, propensity, reasons in rows:  # the log says what was chosen and done
        logged = json.loads(reasons)
        assert logged["refused"] is False
        if action == "nothing":
            assert logged["chosen"] is None and propensity == logged["chosen_propensity"]
        else:
            assert logged["chosen"] == "pct10" and propensity == logged["chosen_propensity"]
    assert con.sql("SELECT kind, value FROM outcomes ORDER BY kind").fetchall() == [
        ("conversion", 1.0), ("revenue", 42.5)]
    assert con.sql("SELECT count(*) FROM events").fetchone()[0] == 1
    con.close()
    with served(tmp_path, key=KEY) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:  # a later run
        for answer in answers:  # no longer in memory: the warehouse's row, as answered
            got = c.get(f"/v1/decisions/{answer['decision_id']}")
            assert got.status_code == 200, got.text
            body = got.json()
            assert body["context"] == {"dwell_ms": 50_000}
            assert {k: body[k] for k in answer if k != "request_id"} == {
                k: v for k, v in answer.items() if k != "request_id"}
        missing = c.get("/v1/decisions/d-none")
        assert missing.status_code == 404 and "found none by that id" in missing.json()["error"]


def test_redis_unreachable_answers_nothing_degraded(tmp_path: Path) -> None:
    port = 6_399  # nothing listens here
    # epsilon 0: an exploratory holdout would answer nothing without asking the state store
    with served(tmp_path, "--state", f"redis://127.0.0.1:{port}/0", key=KEY,
                config=CONFIG) as url:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            d = _decide(c, customer_id="r1", context={"dwell_ms": 50_000})
            assert d["action"] is None and d["degraded"] is True
            assert "state store unreachable" in d["reasons"][-1]
            health = c.get("/healthz").json()
            assert health["status"] == "degraded" and health["state"]["reachable"] is False
            none = _decide(c, customer_id="r1", context={})
            assert none["action"] is None


@contextlib.contextmanager
def hung_redis() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_hung_redis_refuses_events_without_stalling_other_requests(tmp_path: Path) -> None:
    # every Redis call waits out its 3 s timeout; the event loop must keep serving meanwhile
    config = CONFIG.replace("epsilon = 0.0", "epsilon = 0.0\nstate_timeout_s = 3.0")
    with hung_redis() as port, served(tmp_path, "--state", f"redis://127.0.0.1:{port}/0",
                                      key=KEY, config=config, ready="/metrics") as url:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            outcome: dict[str, httpx.Response] = {}

            def long_dwell() -> None:  # fires the dwell trigger: a once-claim in Redis
                outcome["r"] = c.post("/v1/events", json={
                    "type": "product_view", "customer_id": "h1", "session_id": "s1",
                    "product_id": "p1", "dwell_ms": 45_000})

            started = time.monotonic()
            worker = threading.Thread(target=long_dwell)
            worker.start()
            time.sleep(0.5)  # the event is now waiting on Redis
            metrics = c.get("/metrics")
            waited = time.monotonic() - started
            worker.join()
            assert metrics.status_code == 200
            assert waited < 2.0, f"/metrics waited {waited:.1f}s behind the trigger's claim"
            r = outcome["r"]
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            assert "trigger state unreachable" in r.json()["error"]


@pytest.mark.parametrize(("args", "words"), [
    (["--workers", "2"], "--workers: expected --state redis://... when more than one worker"),
    (["--config", "missing.toml"], "missing.toml: expected a TOML config file; found nothing"),
    (["--state", "mongodb://x"], "expected 'memory' or a redis:// URL"),
    (["--port", "0"], "--port: expected a port in 1-65535"),
    (["--log-level", "bogus"], "--log-level: expected one of critical"),
    (["--state", "redis://127.0.0.1:6379/x"], "whose path is a database number"),
    (["--config", "."], ".: expected a TOML config file; found a folder"),
    (["--config", "TOML:service = 3"], "expected a [service] table; found service = 3"),
    (["--config", 'TOML:[service]\noutbox = "service.toml/o.sqlite"'],
     "field 'outbox': expected a file in a folder that exists or can be made"),
    (["--config", 'TOML:[[service.triggers]]\nkind = "bogus"'], "triggers[0].kind: expected"),
    (["--config", 'TOML:[service.channels.email]\nkind = "pigeon"'],
     "service.channels.email.kind: expected 'smtp' or 'webhook'"),
    (["--config", 'TOML:[service]\nplan = "none.csv"'], "plan none.csv: expected a plan CSV"),
])
def test_serve_refuses_bad_options_with_exit_2(tmp_path: Path, args: list[str],
                                               words: str) -> None:
    from _cli import marketloop

    if args[1].startswith("TOML:"):
        (tmp_path / "service.toml").write_text(args[1].removeprefix("TOML:") + "\n")
        args = [args[0], "service.toml"]
    proc = marketloop("serve", *args, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no banner before it


@pytest.mark.parametrize(("method", "path", "field"), [
    ("PUT", "/v1/customers/bad%00id/consents", "path.customer_id"),
    ("PUT", "/v1/customers/anon:v1/consents", "path.customer_id"),
    ("PUT", f"/v1/customers/{'c' * 129}/consents", "path.customer_id"),
    ("GET", "/v1/decisions/%00", "path.decision_id"),
    ("GET", f"/v1/decisions/{'d' * 129}", "path.decision_id"),
])
def test_ids_in_a_path_keep_the_rules_of_ids_in_a_body(client, method: str, path: str,
                                                       field: str) -> None:
    r = client.request(method, path, json={"channel": "email", "granted": True})
    assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_the_consent_route_checks_the_key_before_the_body(service) -> None:
    url, _ = service
    r = httpx.put(f"{url}/v1/customers/c1/consents", content=b"{",
                  headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    r = httpx.put(f"{url}/v1/customers/c1/consents", content=b"{", headers={
        "content-type": "application/json", **AUTH})
    assert r.status_code == 400 and r.json()["error"].startswith("malformed JSON"), r.text
