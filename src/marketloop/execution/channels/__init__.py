"""Channels and dispatch: providers per channel, a durable outbox, and the dispatcher.

A decision's message is enqueued in the :class:`Outbox` under its idempotency key; a
:class:`Dispatcher` claims due messages, re-checks consent, and sends each through the
channel's provider (:class:`SMTPProvider`, :class:`WebhookProvider`, :class:`InAppProvider`),
retrying with backoff until it is sent or becomes a dead letter. See docs/channels.md.
"""

from __future__ import annotations

from marketloop.execution.channels._message import CHANNELS, DeliveryError, Message, Provider
from marketloop.execution.channels.dispatch import ConsentCheck, Dispatcher, DispatchStats
from marketloop.execution.channels.email import SMTPProvider
from marketloop.execution.channels.inapp import InAppProvider
from marketloop.execution.channels.outbox import STATUSES, Outbox, OutboxRecord
from marketloop.execution.channels.webhook import WebhookProvider, sign, verify

__all__ = [
    "CHANNELS",
    "STATUSES",
    "ConsentCheck",
    "DeliveryError",
    "DispatchStats",
    "Dispatcher",
    "InAppProvider",
    "Message",
    "Outbox",
    "OutboxRecord",
    "Provider",
    "SMTPProvider",
    "WebhookProvider",
    "sign",
    "verify",
]
