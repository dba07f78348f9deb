"""The guard around every route, over real sockets: body limits, slow and vanishing clients,
unknown routes, and the 500 that carries its request id into the log."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from _server import free_port, served
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from marketloop.execution._guard import RequestGuard
from marketloop.execution._metrics import Metrics

KEY = "test-key-0123456789"
AUTH = b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
CONFIG = """
[service]
max_body_bytes = 4096
body_timeout_s = 1.0
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("guard"), key=KEY, config=CONFIG) as url:
        yield url


def _raw(url: str, request: bytes, *, hang_up: bool = False) -> tuple[bytes, float]:
    """Send ``request`` as bytes; the whole answer (until the server closes) and its wait."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        if hang_up:
            return b"", 0.0
        started, answer = time.monotonic(), b""
        while chunk := s.recv(65_536):
            answer += chunk
        return answer, time.monotonic() - started


def _head(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_a_body_over_the_limit_is_413_before_it_is_read(service: str) -> None:
    r = httpx.post(f"{service}/v1/decide", headers={"Authorization": f"Bearer {KEY}"},
                   json={"customer_id": "c1", "context": {"note": "x" * 10_000}})
    assert r.status_code == 413, r.text
    assert "expected at most 4,096 bytes; found Content-Length" in r.json()["error"]
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert r.headers["connection"] == "close"


def test_a_chunked_body_over_the_limit_is_413(service: str) -> None:
    body = b'{"customer_id": "c1", "context": {"note": "' + b"x" * 9_000 + b'"}}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
    answer, _ = _raw(service, b"POST /v1/decide HTTP/1.1\r\nHost: t\r\n" + AUTH
                     + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    status, headers, body_out = _head(answer)
    assert status == 413 and b"found more than 4,096" in body_out
    assert headers["connection"] == "close" and headers["x-request-id"]


def test_a_body_that_stops_arriving_is_408(service: str) -> None:
    answer, waited = _raw(service, b"POST /v1/decide HTTP/1.1\r\nHost: t\r\n" + AUTH
                          + b"Content-Length: 100\r\n\r\n" + b'{"customer_id"')
    status, headers, body = _head(answer)
    assert status == 408 and b"within 1 s" in body, answer
    assert 0.8 < waited < 5 and headers["connection"] == "close"


def test_a_client_gone_mid_body_is_counted_499_and_the_service_goes_on(service: str) -> None:
    def count() -> float:
        text = httpx.get(f"{service}/metrics").text
        return sum(s.value for f in text_string_to_metric_families(text)
                   for s in f.samples if s.name == "marketloop_http_requests_total"
                   and s.labels.get("status") == "499")

    before = count()
    _raw(service, b"POST /v1/events HTTP/1.1\r\nHost: t\r\n" + AUTH
         + b"Content-Length: 100\r\n\r\n" + b'{"type"', hang_up=True)
    deadline = time.monotonic() + 10
    while count() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count() == before + 1
    r = httpx.post(f"{service}/v1/decide", headers={"Authorization": f"Bearer {KEY}"},
                   json={"customer_id": "c1"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("method", "path", "status", "words"), [
    ("GET", "/v2/decide", 404, "GET /v2/decide: expected a route of this service"),
    ("DELETE", "/healthz", 405, "DELETE /healthz: expected method GET, HEAD"),
    ("GET", "/v1/decide", 405, "expected method POST"),
    ("POST", "/v1/decide/", 404, "POST /v1/decide/: expected a route of this service"),
])
def test_unknown_routes_and_methods_answer_in_the_error_shape(
    service: str, method: str, path: str, status: int, words: str
) -> None:
    r = httpx.request(method, f"{service}{path}", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == status and words in r.json()["error"], r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]
    if status == 405:  # the header names every method of the path, as the message does
        assert r.headers["allow"] == words.rsplit("expected method ", 1)[1]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_error_is_a_500_with_its_request_id_in_the_log() -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("a bug")

    @app.get("/fine")
    async def fine() -> dict:
        return {"ok": True}

    app.add_middleware(RequestGuard, metrics=Metrics(), max_body_bytes=4096,
                       body_timeout_s=1.0)  # as create_app adds it
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    seen = _Records()
    try:
        while not server.started:
            time.sleep(0.05)
        logging.getLogger("uvicorn.error").addHandler(seen)  # uvicorn's config is set by now
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            r = c.get("/boom", headers={"X-Request-ID": "req-42"})
            assert r.status_code == 500 and r.headers["x-request-id"] == "req-42"
            assert r.json() == {"error": "internal error; the request id names it in the "
                                "service log", "field": None, "request_id": "req-42"}
            assert "traceback" not in r.text.lower()
            assert c.get("/fine").json() == {"ok": True}  # the same connection goes on
        logged = [rec for rec in seen.records if "req-42" in rec.getMessage()]
        assert logged and logged[0].exc_info is not None
    finally:
        logging.getLogger("uvicorn.error").removeHandler(seen)
        server.should_exit = True
        thread.join(timeout=10)


def test_the_limits_are_checked_in_the_config(tmp_path: Path) -> None:
    from _cli import marketloop

    (tmp_path / "s.toml").write_text("[service]\nmax_body_bytes = 10\n")
    proc = marketloop("serve", "--config", str(tmp_path / "s.toml"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "max_body_bytes" in proc.stderr, proc.stderr


def test_a_request_id_that_is_not_printable_ascii_is_replaced(service: str) -> None:
    r = httpx.get(f"{service}/healthz", headers={"X-Request-ID": "caf\u00e9 42".encode()})
    assert r.status_code == 200 and r.headers["x-request-id"].isalnum()
    assert len(r.headers["x-request-id"]) == 32
    assert httpx.get(f"{service}/healthz", headers={"X-Request-ID": "a" * 129}
                     ).headers["x-request-id"] != "a" * 129
    assert httpx.head(f"{service}/healthz").status_code == 200  # load balancers' probes
