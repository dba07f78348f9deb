"""The outbox on a real SQLite file: idempotency, leases, backoff, dead letters, restarts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketloop.exceptions import ConfigError
from marketloop.execution.channels import STATUSES, Message, Outbox


def _message(i: int | str, customer: str = "c1", channel: str = "email") -> Message:
    return Message(f"d{i}:{channel}", f"d{i}", customer, channel, to="c1@example.com")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    yield outbox
    outbox.close()


def test_enqueue_is_idempotent_one_row_per_key(box: Outbox) -> None:
    m = _message(1)
    assert box.enqueue(m, now=0) is True
    assert box.enqueue(m, now=5) is False
    changed = Message(m.message_id, m.decision_id, m.customer_id, m.channel, body="other")
    assert box.enqueue(changed, now=6) is False
    assert box.counts()["pending"] == 1
    assert box.get(m.message_id).message == m  # the first version is kept
    assert box.get(m.message_id).enqueued_at == 0


def test_message_round_trips_through_the_row(box: Outbox) -> None:
    m = Message("d1:push", "d1", "c9", "push", purpose="service", subject="S", body="B",
                payload={"offer_id": "o1", "product_ids": ["p1", "p2"], "pct": 0.1}, to="tok")
    box.enqueue(m, now=0)
    assert box.claim_due(now=0) == [m]


def test_counts_list_every_status(box: Outbox) -> None:
    assert box.counts() == dict.fromkeys(STATUSES, 0)


def test_a_claim_leases_rows_until_the_lease_expires(box: Outbox) -> None:
    for i in range(3):
        box.enqueue(_message(i), now=0)
    first = box.claim_due(now=0, limit=2, lease_s=30)
    second = box.claim_due(now=1, limit=10, lease_s=30)
    assert len(first) == 2 and len(second) == 1
    assert not {m.message_id for m in first} & {m.message_id for m in second}
    assert box.claim_due(now=29.9) == []
    again = box.claim_due(now=30.5, limit=10)  # first two leases expired: at-least-once
    assert sorted(m.message_id for m in again) == sorted(m.message_id for m in first)
    assert box.counts()["in_flight"] == 3


def test_send_at_defers_the_first_attempt(box: Outbox) -> None:
    box.enqueue(_message(1), now=0, send_at=3600)
    assert box.claim_due(now=3599) == []
    assert len(box.claim_due(now=3600)) == 1


def test_backoff_doubles_from_one_second_then_dead_letter(box: Outbox) -> None:
    box.enqueue(_message(1), now=0)
    now, waits = 0.0, []
    for attempt in range(1, 7):
        claimed = box.claim_due(now=now)
        assert [m.message_id for m in claimed] == ["d1:email"], attempt
        status = box.mark_failed("d1:email", f"refused #{attempt}", now)
        if attempt < 6:
            assert status == "retrying"
            due = box.get("d1:email").due_at
            assert box.claim_due(now=due - 0.01) == []  # not before its time
            waits.append(due - now)
            now = due
        else:
            assert status == "dead"
    assert waits == [1, 2, 4, 8, 16]
    [dead] = box.dead_letters()
    assert (dead.attempts, dead.last_error) == (6, "refused #6")
    assert box.counts()["dead"] == 1 and box.claim_due(now=10**6) == []


def test_non_retryable_failure_is_dead_at_once(box: Outbox) -> None:
    box.enqueue(_message(1), now=0)
    box.claim_due(now=0)
    assert box.mark_failed("d1:email", "HTTP 400", 0, False) == "dead"
    assert box.dead_letters()[0].last_error == "HTTP 400"


def test_retry_after_lengthens_the_wait(box: Outbox) -> None:
    box.enqueue(_message(1), now=0)
    box.claim_due(now=0)
    box.mark_failed("d1:email", "HTTP 429", 0, retry_after_s=60)
    assert box.get("d1:email").due_at == 60


def test_requeue_gives_a_dead_letter_new_attempts(box: Outbox) -> None:
    box.enqueue(_message(1), now=0)
    box.claim_due(now=0)
    box.mark_failed("d1:email", "HTTP 400", 0, False)
    assert box.requeue("d1:email", now=100) is True
    assert box.get("d1:email").attempts == 0 and len(box.claim_due(now=100)) == 1


def test_cancel_by_customer_and_channel(box: Outbox) -> None:
    box.enqueue(_message(1, "c1", "email"), now=0)
    box.enqueue(_message(2, "c1", "sms"), now=0)
    box.enqueue(_message(3, "c2", "email"), now=0)
    box.enqueue(_message(4, "c1", "email"), now=0)
    box.claim_due(now=0, limit=1)  # d1 in flight: cancelled too
    assert box.cancel("c1", "email", "consent revoked", now=1) == 2
    assert box.get("d1:email").status == "cancelled"
    assert box.get("d1:email").last_error == "consent revoked"
    assert box.cancel("c1") == 1  # the sms
    assert box.counts()["cancelled"] == 3
    assert [m.customer_id for m in box.claim_due(now=2)] == ["c2"]
    assert box.mark_failed("d1:email", "late failure", 2) == "cancelled"  # stays cancelled


def test_mark_sent_is_final(box: Outbox) -> None:
    box.enqueue(_message(1), now=0)
    box.claim_due(now=0)
    box.mark_sent("d1:email", now=1)
    box.mark_sent("d1:email", now=2)
    record = box.get("d1:email")
    assert (record.status, record.sent_at) == ("sent", 1)
    assert box.mark_failed("d1:email", "late", 3) == "sent"
    assert box.cancel("c1") == 0


def test_reopen_keeps_every_row_and_redelivers_an_unmarked_claim(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    for i in range(3):
        box.enqueue(_message(i), now=0)
    box.claim_due(now=0, limit=1, lease_s=30)  # claimed, then the process "dies"
    box.claim_due(now=0, limit=1)
    box.mark_sent("d1:email", now=0)
    box.close()
    box = Outbox(path)
    assert box.counts() == {**dict.fromkeys(STATUSES, 0),
                                 "pending": 1, "in_flight": 1, "sent": 1}
    assert [m.message_id for m in box.claim_due(now=1)] == ["d2:email"]
    assert [m.message_id for m in box.claim_due(now=30)] == ["d0:email"]
    box.close()


def test_an_expired_lease_out_of_attempts_becomes_dead(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_attempts=2)
    box.enqueue(_message(1), now=0)
    box.claim_due(now=0, lease_s=10)
    box.claim_due(now=10, lease_s=10)  # attempt 2, and its dispatcher dies too
    assert box.claim_due(now=20) == []
    assert re.match("lease expired on attempt 2", box.dead_letters()[0].last_error)
    box.close()


def test_closed_outbox_says_so(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.close()
    box.close()
    with pytest.raises(ConfigError, match="expected an open outbox; found a closed one"):
        box.counts()


def test_threads_sharing_one_outbox_never_claim_a_row_twice(box: Outbox) -> None:
    for i in range(300):
        box.enqueue(_message(i), now=0)
    seen: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        while claimed := box.claim_due(now=0, limit=7):
            with lock:
                seen.extend(m.message_id for m in claimed)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 300 and len(set(seen)) == 300


_WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from marketloop.execution.channels import Outbox
    path, go = sys.argv[1], Path(sys.argv[2])
    box = Outbox(path)
    while not go.exists():
        time.sleep(0.005)
    got = []
    while claimed := box.claim_due(now=0, limit=5, lease_s=600):
        for m in claimed:
            got.append(m.message_id)
            box.mark_sent(m.message_id, now=0)
    print(json.dumps(got))
""")


def test_two_processes_on_one_file_never_claim_a_row_twice(tmp_path: Path) -> None:
    path, go = tmp_path / "outbox.sqlite", tmp_path / "go"
    box = Outbox(path)
    for i in range(200):
        box.enqueue(_message(i), now=0)
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(go)],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    go.touch()
    results = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    everything = results[0] + results[1]
    assert len(everything) == 200 and len(set(everything)) == 200
    assert box.counts()["sent"] == 200
    box.close()


_KILLED = textwrap.dedent("""
    import os, signal, sys
    from marketloop.execution.channels import Message, Outbox
    box = Outbox(sys.argv[1], durability=sys.argv[2])
    for i in range(50):
        box.enqueue(Message(f"d{i}:sms", f"d{i}", "c1", "sms"), now=0)
    box.claim_due(now=0, limit=1, lease_s=30)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no cleanup
""")


@pytest.mark.parametrize("durability", ["process", "power"])
def test_every_commit_survives_kill_9(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "outbox.sqlite"
    done = subprocess.run([sys.executable, "-c", _KILLED, str(path), durability], check=False)
    assert done.returncode == -9
    with Outbox(path) as box:
        assert (box.counts()["pending"], box.counts()["in_flight"]) == (49, 1)
        assert len(box.claim_due(now=30, limit=100)) == 50  # the lost claim's lease expired


def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(
        "Outbox durability: expected 'process' or 'power'; found 'disk'."
    )):
        Outbox(tmp_path / "o.sqlite", durability="disk")  # type: ignore[arg-type]


def test_no_resend_channels_dead_letter_an_unconfirmed_send(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", no_resend_channels={"email"}) as box:
        box.enqueue(_message(1, channel="email"), now=0)
        box.enqueue(_message(2, channel="sms"), now=0)
        box.claim_due(now=0, lease_s=30)  # both claimed; the dispatcher dies
        assert [m.message_id for m in box.claim_due(now=30)] == ["d2:sms"]
        assert box.get("d1:email").last_error == (
            "lease expired on attempt 1 with the outcome unknown; email is not resent")


def test_release_hands_a_claim_back_uncounted(box: Outbox) -> None:
    box.enqueue(_message(1), now=0)
    box.claim_due(now=0)
    assert box.release("d1:email", now=5) is True
    record = box.get("d1:email")
    assert (record.status, record.attempts, record.due_at) == ("pending", 0, 5)
    assert box.release("d1:email") is False


def test_purge_forgets_old_final_rows_only(box: Outbox) -> None:
    for i in range(3):
        box.enqueue(_message(i, customer=f"c{i}"), now=0)
    box.claim_due(now=0, limit=1)
    box.mark_sent("d0:email", now=10)
    box.cancel("c1", now=10)
    assert box.purge(older_than_s=100, now=100) == 0
    assert box.purge(older_than_s=100, now=111) == 2
    assert box.counts()["pending"] == 1 and sum(box.counts().values()) == 1
    assert box.enqueue(_message(0, customer="c0"), now=200) is True  # the key is forgotten
