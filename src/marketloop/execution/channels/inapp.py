"""In-app messages: a per-customer inbox in SQLite that the service reads back to the app."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from marketloop.execution.channels._message import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    message_id   TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    message      TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    read_at      REAL
);
CREATE INDEX IF NOT EXISTS inbox_customer ON inbox (customer_id, delivered_at);
"""


class InAppProvider:
    """Delivers ``in_app`` messages into an inbox the app polls.

    Delivery is an ``INSERT OR IGNORE`` keyed by ``message_id``: a resend after a crash
    finds the row already there, so an in-app message reaches the customer exactly once.
    :meth:`send` runs the insert in a thread: its commit, or its wait for another worker's
    lock on a shared inbox file, never holds up the event loop. The file is in WAL mode
    with ``synchronous=NORMAL``, as the outbox's default: a delivered message survives the
    process being killed at any point.

    Parameters
    ----------
    path : str or Path, default=":memory:"
        SQLite file for the inbox; ``":memory:"`` keeps it in this process only.
    max_per_customer : int, default=100
        Newest messages kept per customer; older ones are dropped on delivery.

    Examples
    --------
    >>> import asyncio
    >>> inapp = InAppProvider()
    >>> asyncio.run(inapp.send(Message("d1:in_app", "d1", "c1", "in_app", body="10% off")))
    >>> [m.body for m in inapp.inbox("c1")]
    ['10% off']
    """

    def __init__(self, path: str | Path = ":memory:", *, max_per_customer: int = 100) -> None:
        self.path = str(path)
        self.max_per_customer = max_per_customer
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        if self.path != ":memory:":
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._con.executescript(_SCHEMA)

    async def send(self, message: Message) -> None:
        """Put the message in its customer's inbox (once per ``message_id``), off the loop."""
        await asyncio.to_thread(self.deliver, message)

    def deliver(self, message: Message, *, now: float | None = None) -> bool:
        """Insert into the inbox; False when the message was already there."""
        t = time.time() if now is None else now
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                cur = con.execute(
                    "INSERT OR IGNORE INTO inbox (message_id, customer_id, message,"
                    " delivered_at) VALUES (?, ?, ?, ?)",
                    (message.message_id, message.customer_id, message.to_json(), t),
                )
                con.execute(
                    "DELETE FROM inbox WHERE customer_id = ? AND message_id NOT IN ("
                    " SELECT message_id FROM inbox WHERE customer_id = ?"
                    " ORDER BY delivered_at DESC LIMIT ?)",
                    (message.customer_id, message.customer_id, self.max_per_customer),
                )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return cur.rowcount == 1

    def inbox(
        self, customer_id: str, *, unread_only: bool = False, limit: int = 50
    ) -> list[Message]:
        """The customer's messages, newest first."""
        unread = " AND read_at IS NULL" if unread_only else ""
        with self._lock:
            rows = self._con.execute(
                f"SELECT message FROM inbox WHERE customer_id = ?{unread}"
                " ORDER BY delivered_at DESC, message_id LIMIT ?",
                (customer_id, limit),
            ).fetchall()
        return [Message.from_json(text) for (text,) in rows]

    def mark_read(self, customer_id: str, message_id: str, *, now: float | None = None) -> bool:
        """Mark one message read; False when the customer has no such unread message."""
        t = time.time() if now is None else now
        with self._lock:
            cur = self._con.execute(
                "UPDATE inbox SET read_at = ? WHERE customer_id = ? AND message_id = ?"
                " AND read_at IS NULL",
                (t, customer_id, message_id),
            )
        return cur.rowcount == 1

    def close(self) -> None:
        """Close the inbox database."""
        with self._lock:
            self._con.close()
