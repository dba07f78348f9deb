"""The dispatcher: claims due messages, re-checks consent, sends, records the outcome."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from marketloop.exceptions import ConfigError, describe
from marketloop.execution.channels._message import DeliveryError, Message, Provider
from marketloop.execution.channels.outbox import Outbox, to_epoch

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
#: Longest time kept between a send's timeout and its lease's end, for the outcome's commit.
_MARGIN_S = 1.0

#: ``consent(customer_id, channel, purpose)``: may the message go out now?
ConsentCheck = Callable[[str, str, str], bool | Awaitable[bool]]


async def _off(fn: Callable[..., _T], /, *args: object, **kwargs: object) -> _T:
    """Run a blocking outbox call (an fsync'd SQLite commit) off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@dataclass(frozen=True)
class DispatchStats:
    """What one :meth:`Dispatcher.run_once` did: messages claimed and how each ended.

    ``released`` counts claims handed back unsent because their lease ran short while they
    waited for a send slot; they are due again at once.
    """

    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    cancelled: int = 0
    released: int = 0


class Dispatcher:
    """Delivers the outbox's due messages through one provider per channel.

    Parameters
    ----------
    outbox : Outbox
        Where messages wait; several dispatchers (threads or processes) may share its file.
    providers : Mapping of str to Provider
        Provider per channel name; a message on a channel without one is a dead letter.
    consent : callable
        ``consent(customer_id, channel, purpose) -> bool`` (or an awaitable of one), asked
        for every message at dispatch time: a False cancels the message unsent. An error
        raised by the check delays the message (retryable failure), it never sends it.
    batch_size : int, default=100
        Messages claimed per :meth:`run_once`.
    lease_s : float, default=30.0
        Claim lease. A message whose dispatcher dies is claimed again once it expires.
    send_timeout_s : float or None, default=None
        Longest wait for one provider call, a retryable failure when exceeded; None means
        ``lease_s / 2``. A send starts only if it can time out before its claim's lease
        ends (less a margin of ``min(1 s, lease_s / 10)`` for recording the outcome);
        claims that waited too long for a send slot are released, due again at once.
    concurrency : int, default=16
        Sends in flight at once within one :meth:`run_once`.
    """

    def __init__(
        self,
        outbox: Outbox,
        providers: Mapping[str, Provider],
        consent: ConsentCheck,
        *,
        batch_size: int = 100,
        lease_s: float = 30.0,
        send_timeout_s: float | None = None,
        concurrency: int = 16,
    ) -> None:
        self.outbox = outbox
        self.providers = dict(providers)
        self.consent = consent
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.send_timeout_s = lease_s / 2 if send_timeout_s is None else send_timeout_s
        self._margin_s = min(_MARGIN_S, lease_s / 10)
        if self.send_timeout_s + self._margin_s > lease_s:
            raise ConfigError(describe(
                "Dispatcher send_timeout_s",
                f"at most lease_s - {self._margin_s:g} = {lease_s - self._margin_s:g} s",
                f"{self.send_timeout_s:g} s",
                "A send must end before its lease, or a second dispatcher may send it too.",
            ))
        self.concurrency = concurrency

    async def _allowed(self, message: Message) -> bool:
        answer = self.consent(message.customer_id, message.channel, message.purpose)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)

    async def _deliver(self, message: Message, now: float | None, lease_end: float) -> str:
        """Send one claimed message and record the result; returns its new status.

        ``lease_end`` is the claim's expiry on the monotonic clock: a message whose send
        could outlast it is released unsent, so no other dispatcher can claim it mid-send.
        """
        box, mid = self.outbox, message.message_id
        timeout = self.send_timeout_s
        if time.monotonic() + timeout + self._margin_s > lease_end:
            await _off(box.release, mid, now)
            return "released"
        try:
            allowed = await self._allowed(message)
        except Exception as exc:  # a broken consent store must not send
            return await _off(box.mark_failed, mid, f"consent check failed: {exc!r}", now)
        if not allowed:
            reason = f"no consent for {message.channel}/{message.purpose}"
            await _off(box.cancel_message, mid, reason, now)
            return "cancelled"
        provider = self.providers.get(message.channel)
        if provider is None:
            error = f"no provider for channel {message.channel!r}; have {sorted(self.providers)}"
            return await _off(box.mark_failed, mid, error, now, False)
        try:
            await asyncio.wait_for(provider.send(message), timeout=timeout)
        except DeliveryError as exc:
            return await _off(
                box.mark_failed, mid, str(exc), now, exc.retryable, retry_after_s=exc.retry_after_s
            )
        except TimeoutError:  # the provider may still deliver: a resend may duplicate
            unknown = message.channel in box.no_resend_channels
            error = f"send timed out after {timeout:.3g} s" + (
                f"; outcome unknown, {message.channel} is not resent" if unknown else "")
            return await _off(box.mark_failed, mid, error, now, not unknown)
        except Exception as exc:  # a provider bug: keep the message, retry, log
            logger.exception("provider for %s raised on %s", message.channel, mid)
            return await _off(box.mark_failed, mid, f"provider raised {exc!r}", now)
        await _off(box.mark_sent, mid, now)
        return "sent"

    async def run_once(self, now: float | datetime | None = None) -> DispatchStats:
        """Claim the due messages, deliver them concurrently, and say how each ended.

        Parameters
        ----------
        now : float, datetime or None
            Time used for claiming and for the outcome records (default: the clock, read
            at each step). Tests inject it to step through backoff without sleeping.
        """
        t = None if now is None else to_epoch(now)
        lease_end = time.monotonic() + self.lease_s
        claimed = await _off(
            self.outbox.claim_due, time.time() if t is None else t, self.batch_size, self.lease_s
        )
        if not claimed:
            return DispatchStats()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: Message) -> str:
            async with gate:
                return await self._deliver(message, t, lease_end)

        ends = await asyncio.gather(*(one(m) for m in claimed))
        return DispatchStats(
            claimed=len(claimed),
            sent=ends.count("sent"),
            retrying=ends.count("retrying"),
            dead=ends.count("dead"),
            cancelled=ends.count("cancelled"),
            released=ends.count("released"),
        )

    async def run_forever(self, stop: asyncio.Event, interval_s: float = 0.2) -> None:
        """Run :meth:`run_once` until ``stop`` is set; idle ``interval_s`` when nothing is due.

        A failing round (e.g. the outbox file locked past its busy timeout) is logged and
        retried after ``interval_s``; it never ends the loop.
        """
        while not stop.is_set():
            try:
                stats = await self.run_once()
            except Exception:
                logger.exception("dispatch round failed; retrying in %.1f s", interval_s)
                stats = DispatchStats()
            if stats.claimed < self.batch_size:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
                except TimeoutError:
                    pass
