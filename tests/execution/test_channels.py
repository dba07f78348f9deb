"""Providers and the dispatcher against real servers: aiosmtpd SMTP and an HTTP webhook."""

from __future__ import annotations

import asyncio
import email
import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from marketloop.exceptions import ConfigError, SchemaError
from marketloop.execution.channels import (
    DeliveryError,
    Dispatcher,
    DispatchStats,
    InAppProvider,
    Message,
    Outbox,
    SMTPProvider,
    WebhookProvider,
    sign,
    verify,
)

SECRET = "test-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _allow(customer_id: str, channel: str, purpose: str) -> bool:
    return True


def _mail(i: int, customer: str = "c1") -> Message:
    return Message(f"d{i}:email", f"d{i}", customer, "email", subject=f"Offer {i}",
                   body=f"Hello {customer}, 10% off.", to=f"{customer}@example.com")


def _hook_message(i: int, channel: str = "webhook", customer: str = "c1") -> Message:
    return Message(f"d{i}:{channel}", f"d{i}", customer, channel, body="hi",
                   payload={"offer_id": "o1"}, to="+15550100")


# -- a real SMTP server -------------------------------------------------------------------
class _Inbox:
    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self.rcpt_reply = "250 OK"

    async def handle_RCPT(self, server: object, session: object, envelope: object,
                          address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return self.rcpt_reply

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.mails.append(email.message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 Message accepted for delivery"


class _SMTPServer:
    """aiosmtpd on a fixed loopback port that can go down and come back."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[_SMTPServer]:
    server = _SMTPServer()
    yield server
    server.stop()


def _smtp_provider(server: _SMTPServer) -> SMTPProvider:
    return SMTPProvider("127.0.0.1", server.port, "shop@example.com", timeout_s=2)


# -- a real webhook receiver --------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent SYNs: 1 s client retries
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and hung up: expected in the timeout tests


class _Hook:
    """Loopback HTTP server: checks signatures, records keys, answers from a script."""

    def __init__(self, script: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay_s = delay_s
        self.received: list[dict[str, object]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify(SECRET, body, self.headers["X-Marketloop-Timestamp"],
                               self.headers["X-Marketloop-Signature"])
                time.sleep(hook.delay_s)
                with hook.lock:
                    status = hook.script.pop(0) if hook.script else 200
                    hook.received.append({"key": self.headers["Idempotency-Key"],
                                          "valid": valid, "body": json.loads(body)})
                self.send_response(status if valid else 401)
                self.end_headers()
                self.wfile.write(b"bad request: no such number" if status == 400 else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def keys(self) -> list[object]:
        with self.lock:
            return [r["key"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    server = _Hook()
    yield server
    server.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    yield outbox
    outbox.close()


# -- email --------------------------------------------------------------------------------
def test_email_arrives_at_a_real_smtp_server(smtp: _SMTPServer) -> None:
    smtp.start()
    asyncio.run(_smtp_provider(smtp).send(_mail(1)))
    [mail] = smtp.inbox.mails
    assert mail["Subject"] == "Offer 1" and mail["To"] == "c1@example.com"
    assert mail.get_payload(decode=True).decode().strip() == "Hello c1, 10% off."
    assert mail["Message-ID"] == "<d1.email@marketloop>"
    assert mail["X-Marketloop-Message-Id"] == "d1:email"


def test_smtp_server_down_is_retryable(smtp: _SMTPServer) -> None:
    with pytest.raises(DeliveryError, match="ConnectionRefusedError") as info:
        asyncio.run(_smtp_provider(smtp).send(_mail(1)))
    assert info.value.retryable is True


def test_a_bad_address_is_not_retryable(smtp: _SMTPServer) -> None:
    bad = Message("d1:email", "d1", "c1", "email", to="not-an-address")
    with pytest.raises(DeliveryError, match="found 'not-an-address'") as info:
        asyncio.run(_smtp_provider(smtp).send(bad))
    assert info.value.retryable is False


@pytest.mark.parametrize(("reply", "retryable"), [("550 5.1.1 no such user", False),
                                                  ("451 4.3.0 try again later", True)])
def test_smtp_5yz_is_permanent_and_4yz_transient(
    smtp: _SMTPServer, reply: str, retryable: bool
) -> None:
    smtp.inbox.rcpt_reply = reply
    smtp.start()
    with pytest.raises(DeliveryError, match="recipient refused") as info:
        asyncio.run(_smtp_provider(smtp).send(_mail(1)))
    assert info.value.retryable is retryable and smtp.inbox.mails == []


def test_a_payload_json_cannot_hold_is_refused_at_enqueue(box: Outbox) -> None:
    bad = Message("d1:email", "d1", "c1", "email", payload={"when": object()})
    with pytest.raises(SchemaError, match=re.escape("Message 'd1:email' payload: expected")):
        box.enqueue(bad)
    assert sum(box.counts().values()) == 0


def test_email_outage_backs_off_then_dead_letters(smtp: _SMTPServer, box: Outbox) -> None:
    box.enqueue(_mail(1), now=0)
    dispatcher = Dispatcher(box, {"email": _smtp_provider(smtp)}, _allow)
    ends = []
    for now in (0, 1, 3, 7, 15, 31):  # the 1, 2, 4, 8, 16 s backoff, to the second
        assert asyncio.run(dispatcher.run_once(now=now - 0.01)) == DispatchStats()
        ends.append(asyncio.run(dispatcher.run_once(now=now)))
    assert [e.retrying for e in ends] == [1, 1, 1, 1, 1, 0] and ends[-1].dead == 1
    [dead] = box.dead_letters()
    assert dead.attempts == 6 and "ConnectionRefusedError" in dead.last_error


def test_email_is_delivered_once_the_server_is_back_across_restarts(
    smtp: _SMTPServer, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    for i in (1, 2):
        box.enqueue(_mail(i), now=0)
    asyncio.run(Dispatcher(box, {"email": _smtp_provider(smtp)}, _allow).run_once(now=0))
    assert box.counts()["retrying"] == 2
    box.close()  # restart, and a dispatcher that claims d1 and dies before sending
    crashed = Outbox(path)
    assert [m.message_id for m in crashed.claim_due(now=1, limit=1, lease_s=30)] == ["d1:email"]
    crashed.close()
    smtp.start()
    box = Outbox(path)
    dispatcher = Dispatcher(box, {"email": _smtp_provider(smtp)}, _allow, lease_s=30)
    assert asyncio.run(dispatcher.run_once(now=1)).sent == 1
    assert asyncio.run(dispatcher.run_once(now=30)).claimed == 0  # d1's lease runs to 31
    assert asyncio.run(dispatcher.run_once(now=31)).sent == 1
    assert sorted(m["Subject"] for m in smtp.inbox.mails) == ["Offer 1", "Offer 2"]
    assert box.counts()["sent"] == 2
    box.close()


# -- webhooks -----------------------------------------------------------------------------
def test_webhook_is_signed_and_carries_the_idempotency_key(hook: _Hook) -> None:
    provider = WebhookProvider(hook.url, secret=SECRET, kind="sms")
    asyncio.run(provider.send(_hook_message(1, "sms")))
    [got] = hook.received
    assert got["valid"] is True and got["key"] == "d1:sms"
    assert got["body"]["kind"] == "sms" and got["body"]["payload"] == {"offer_id": "o1"}


def test_signature_checks_body_secret_and_age() -> None:
    body, ts = b'{"a":1}', "1700000000"
    good = sign(SECRET, ts, body)
    assert verify(SECRET, body, ts, good, now=1700000010)
    assert not verify(SECRET, b'{"a":2}', ts, good, now=1700000010)
    assert not verify("another-secret-0123456789", body, ts, good, now=1700000010)
    assert not verify(SECRET, body, ts, good, now=1700000000 + 301)
    assert not verify(SECRET, body, "soon", good)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected at least 16 characters; found 5"):
        WebhookProvider("http://127.0.0.1:1/", secret="short")


def test_webhook_500_then_200_is_retried_with_the_same_key(box: Outbox) -> None:
    hook = _Hook(script=[500, 503])
    try:
        box.enqueue(_hook_message(1, "push"), now=0)
        provider = WebhookProvider(hook.url, secret=SECRET, kind="push")
        dispatcher = Dispatcher(box, {"push": provider}, _allow)
        ends = [asyncio.run(dispatcher.run_once(now=t)) for t in (0, 1, 3)]
        assert [(e.retrying, e.sent) for e in ends] == [(1, 0), (1, 0), (0, 1)]
        assert hook.keys() == ["d1:push"] * 3
        assert all(r["valid"] for r in hook.received)
        assert box.get("d1:push").status == "sent"
    finally:
        hook.close()


def test_webhook_400_is_a_dead_letter_at_once(box: Outbox) -> None:
    hook = _Hook(script=[400])
    try:
        box.enqueue(_hook_message(1), now=0)
        provider = WebhookProvider(hook.url, secret=SECRET)
        stats = asyncio.run(Dispatcher(box, {"webhook": provider}, _allow).run_once(now=0))
        assert stats.dead == 1 and hook.keys() == ["d1:webhook"]
        [dead] = box.dead_letters()
        assert "HTTP 400 'bad request: no such number'" in dead.last_error
        assert dead.attempts == 1
    finally:
        hook.close()


def test_webhook_receiver_down_is_retryable() -> None:
    provider = WebhookProvider(f"http://127.0.0.1:{_free_port()}/", secret=SECRET)
    with pytest.raises(DeliveryError, match="ConnectError") as info:
        asyncio.run(provider.send(_hook_message(1)))
    assert info.value.retryable is True


# -- dispatch rules -----------------------------------------------------------------------
def test_consent_revoked_after_enqueue_is_never_sent(hook: _Hook, box: Outbox) -> None:
    revoked: set[tuple[str, str]] = set()

    async def consent(customer_id: str, channel: str, purpose: str) -> bool:
        return (customer_id, channel) not in revoked

    for i, customer in enumerate(["c1", "c2", "c1"]):
        box.enqueue(_hook_message(i, customer=customer), now=0)
    revoked.add(("c1", "webhook"))
    provider = WebhookProvider(hook.url, secret=SECRET)
    stats = asyncio.run(Dispatcher(box, {"webhook": provider}, consent).run_once(now=0))
    assert (stats.sent, stats.cancelled) == (1, 2)
    assert hook.keys() == ["d1:webhook"]
    assert box.counts()["cancelled"] == 2
    assert "no consent for webhook/marketing" in box.get("d0:webhook").last_error


def test_a_failing_consent_check_delays_and_never_sends(hook: _Hook, box: Outbox) -> None:
    def broken(customer_id: str, channel: str, purpose: str) -> bool:
        raise ConnectionError("consent store unreachable")

    box.enqueue(_hook_message(1), now=0)
    provider = WebhookProvider(hook.url, secret=SECRET)
    stats = asyncio.run(Dispatcher(box, {"webhook": provider}, broken).run_once(now=0))
    assert stats.retrying == 1 and hook.keys() == []


def test_a_channel_without_provider_is_a_dead_letter(box: Outbox) -> None:
    box.enqueue(_hook_message(1, "sms"), now=0)
    stats = asyncio.run(Dispatcher(box, {}, _allow).run_once(now=0))
    assert stats.dead == 1
    assert box.dead_letters()[0].last_error == "no provider for channel 'sms'; have []"


def test_in_app_messages_land_once_in_the_inbox(box: Outbox) -> None:
    inapp = InAppProvider()
    m = Message("d1:in_app", "d1", "c1", "in_app", subject="Back in stock", body="p1")
    box.enqueue(m, now=0)
    stats = asyncio.run(Dispatcher(box, {"in_app": inapp}, _allow).run_once(now=0))
    assert stats.sent == 1 and inapp.inbox("c1") == [m] and inapp.inbox("c2") == []
    assert inapp.deliver(m) is False  # a resend after a crash: still one
    assert inapp.mark_read("c1", "d1:in_app") is True
    assert inapp.inbox("c1", unread_only=True) == []
    inapp.close()


def test_an_in_app_send_waiting_for_a_shared_inbox_lock_leaves_the_loop_free(
        tmp_path: Path) -> None:
    """Two workers share one inbox file: while the other holds its write lock, a send
    waits in a thread and the event loop goes on serving (here: a ticker)."""
    path = tmp_path / "inbox.sqlite"
    inapp = InAppProvider(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other worker, mid-delivery
    ticks = 0

    async def main() -> None:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        send = asyncio.create_task(inapp.send(Message("d1:in_app", "d1", "c1", "in_app")))
        await asyncio.sleep(0.3)
        assert not send.done() and ticks >= 10  # waiting for the lock, the loop not
        other.execute("COMMIT")
        await asyncio.wait_for(send, 5)
        task.cancel()

    asyncio.run(main())
    assert [m.message_id for m in inapp.inbox("c1")] == ["d1:in_app"]
    other.close()
    inapp.close()


def test_two_dispatchers_on_one_outbox_never_send_a_message_twice(tmp_path: Path) -> None:
    path, n = tmp_path / "outbox.sqlite", 120
    hook = _Hook(delay_s=0.002)
    try:
        with Outbox(path) as seed:
            for i in range(n):
                seed.enqueue(_hook_message(i))

        def dispatcher_thread(rounds: list[DispatchStats]) -> None:
            async def main() -> None:
                with Outbox(path) as box:
                    provider = WebhookProvider(hook.url, secret=SECRET)
                    dispatcher = Dispatcher(box, {"webhook": provider}, _allow, batch_size=10)
                    while (stats := await dispatcher.run_once()).claimed:
                        rounds.append(stats)
                    await provider.aclose()
            asyncio.run(main())

        rounds: list[list[DispatchStats]] = [[], []]
        threads = [threading.Thread(target=dispatcher_thread, args=(r,)) for r in rounds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        keys = hook.keys()
        assert len(keys) == n and len(set(keys)) == n
        assert all(rounds), "both dispatchers took part"
        assert sum(s.sent for r in rounds for s in r) == n
    finally:
        hook.close()


def test_run_forever_drains_and_stops(hook: _Hook, box: Outbox) -> None:
    for i in range(5):
        box.enqueue(_hook_message(i))

    async def main() -> None:
        stop = asyncio.Event()
        provider = WebhookProvider(hook.url, secret=SECRET)
        task = asyncio.create_task(
            Dispatcher(box, {"webhook": provider}, _allow).run_forever(stop, interval_s=0.01)
        )
        for _ in range(500):
            if box.counts()["sent"] == 5:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=2)
        await provider.aclose()

    asyncio.run(main())
    assert box.counts()["sent"] == 5 and sorted(hook.keys()) == [f"d{i}:webhook" for i in range(5)]


def test_claims_that_wait_past_their_lease_are_released_unsent(box: Outbox) -> None:
    # One send slot, sends of 0.5 s: a send may start until 3 - 1.5 - 0.3 = 1.2 s after
    # the claim, so of four claims the first two or three are sent and the rest released.
    # The 1.5 s send timeout leaves 3x slack over the receiver's delay on a loaded machine.
    hook, keys = _Hook(delay_s=0.5), [f"d{i}:webhook" for i in range(4)]
    try:
        for i in range(4):
            box.enqueue(_hook_message(i), now=0)
        provider = WebhookProvider(hook.url, secret=SECRET)
        dispatcher = Dispatcher(box, {"webhook": provider}, _allow, lease_s=3.0,
                                send_timeout_s=1.5, concurrency=1)
        stats = asyncio.run(dispatcher.run_once(now=0))
        assert stats.sent >= 1 and stats.released >= 1 and stats.sent + stats.released == 4
        released = [r for r in map(box.get, keys) if r.status == "pending"]
        assert len(released) == stats.released and all(r.attempts == 0 for r in released)
        while asyncio.run(dispatcher.run_once(now=0)).claimed:
            pass
        assert sorted(hook.keys()) == keys  # each once
    finally:
        hook.close()


@pytest.mark.parametrize("no_resend", [False, True])
def test_a_send_timeout_retries_unless_the_channel_is_not_resent(
    tmp_path: Path, no_resend: bool
) -> None:
    hook = _Hook(delay_s=0.5)
    try:
        box = Outbox(tmp_path / "o.sqlite", no_resend_channels={"webhook"} if no_resend else ())
        box.enqueue(_hook_message(1), now=0)
        provider = WebhookProvider(hook.url, secret=SECRET)
        dispatcher = Dispatcher(box, {"webhook": provider}, _allow, send_timeout_s=0.1)
        stats = asyncio.run(dispatcher.run_once(now=0))
        record = box.get("d1:webhook")
        assert record.last_error.startswith("send timed out after 0.1 s")
        if no_resend:
            assert stats.dead == 1 and "outcome unknown, webhook is not resent" in record.last_error
        else:
            assert stats.retrying == 1 and record.status == "retrying"
        box.close()
    finally:
        hook.close()


def test_a_send_timeout_longer_than_the_lease_is_refused(box: Outbox) -> None:
    with pytest.raises(ConfigError, match=re.escape(
        "Dispatcher send_timeout_s: expected at most lease_s - 1 = 29 s; found 30 s."
    )):
        Dispatcher(box, {}, _allow, lease_s=30, send_timeout_s=30)
