"""Service state: consent, contact caps and campaign budgets, in-process or in Redis.

One operation matters most: :meth:`select`, what a decision calls. It checks consent on
every candidate channel, then, on the first that passes, the customer's contact caps and the
campaign's budget, and only if both allow counts the contact and spends the cost, as one
atomic step. In-process that is a lock; in Redis one Lua script (one round trip; Redis runs
a script without interleaving other commands), so several workers sharing one Redis never
overspend a budget or exceed a cap, however many requests race. Money is counted in integer
cents.

Consent per (customer, channel, purpose) is ``True``, ``False`` or unknown (``None``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from marketloop.execution.config import Limits

#: Why a channel was refused by :meth:`State.select`.
CAP_DAY, CAP_WEEK, BUDGET = "cap_per_day", "cap_per_week", "budget_exhausted"
#: Per-channel answers of :meth:`State.select` besides the three refusals above.
RESERVED, NO_CONSENT, QUIET, UNTRIED = "reserved", "no_consent", "quiet_hours", "untried"
_SELECT_CODES = {0: RESERVED, 1: NO_CONSENT, 2: QUIET, 3: CAP_DAY, 4: CAP_WEEK, 5: BUDGET,
                 7: UNTRIED}

# KEYS: consent hash, day counter, week counter, campaign spend.
# ARGV: per_day, per_week, budget cents (-1: none), cost cents, day ttl s, week ttl s, n,
# then per channel: consent field, lenient (1: granted unless refused), quiet (1), contact (1).
# Returns one code per channel (see _SELECT_CODES): consent and quiet hours for every one,
# then the reservation tried on the eligible ones in order until one is reserved or the
# budget refuses.
_SELECT_LUA = """
local n = tonumber(ARGV[7])
local out, eligible = {}, {}
for i = 1, n do
  local at = 7 + (i - 1) * 4
  local v = redis.call('HGET', KEYS[1], ARGV[at + 1])
  local ok
  if ARGV[at + 2] == '1' then ok = (v ~= '0') else ok = (v == '1') end
  if not ok then out[i] = 1
  elseif ARGV[at + 3] == '1' then out[i] = 2
  else out[i] = 7; eligible[#eligible + 1] = i end
end
local budget, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
for _, i in ipairs(eligible) do
  local contact = ARGV[7 + (i - 1) * 4 + 4] == '1'
  local code = 0
  if contact then
    if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[1]) then code = 3
    elseif tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[2]) then code = 4 end
  end
  if code == 0 and budget >= 0 then
    if tonumber(redis.call('GET', KEYS[4]) or '0') + cost > budget then code = 5
    else redis.call('INCRBY', KEYS[4], cost) end
  end
  out[i] = code
  if code == 0 then
    if contact then
      redis.call('INCR', KEYS[2])
      redis.call('EXPIRE', KEYS[2], ARGV[5])
      redis.call('INCR', KEYS[3])
      redis.call('EXPIRE', KEYS[3], ARGV[6])
    end
    break
  end
  if code == 5 then break end
end
return out
"""


class ChannelOption(NamedTuple):
    """A candidate channel for :meth:`State.select`.

    ``lenient``: unknown consent counts as granted (in-app personalisation), else only an
    explicit grant does; ``quiet``: the channel is in its quiet hours; ``contact``: the
    message counts against the contact caps (anything sent away from the site).
    """

    channel: str
    purpose: str
    lenient: bool = False
    quiet: bool = False
    contact: bool = True


class StateUnavailable(Exception):
    """The state store cannot be reached: the caller answers safely and says so."""


class State(Protocol):
    """What the decision path needs from its state store."""

    kind: str

    async def consent(self, customer_id: str, channel: str, purpose: str) -> bool | None: ...

    async def set_consent(self, customer_id: str, channel: str, purpose: str,
                          granted: bool) -> None: ...

    async def set_address(self, customer_id: str, channel: str, address: str) -> None: ...

    async def address(self, customer_id: str, channel: str) -> str | None: ...

    async def select(self, customer_id: str, options: Sequence[ChannelOption], campaign: str,
                     cost_cents: int, budget_cents: int | None,
                     now: dt.datetime) -> list[str]: ...

    async def spent(self, campaign: str) -> int: ...

    async def contacts(self, customer_id: str, now: dt.datetime) -> tuple[int, int]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def _day(now: dt.datetime) -> str:
    return _periods(now.date())[0]


def _week(now: dt.datetime) -> str:
    return _periods(now.date())[1]


@functools.lru_cache(maxsize=64)
def _periods(day: dt.date) -> tuple[str, str]:
    """The cap counters' day and ISO-week names (formatted once a day, not per decision)."""
    year, week, _ = day.isocalendar()
    return day.strftime("%Y%m%d"), f"{year}W{week:02d}"


class MemoryState:
    """State in this process: the embedded default (one worker)."""

    kind = "memory"

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = asyncio.Lock()
        self._consent: dict[tuple[str, str, str], bool] = {}
        self._address: dict[tuple[str, str], str] = {}
        self._count: dict[str, int] = defaultdict(int)
        self._spent: dict[str, int] = defaultdict(int)

    async def consent(self, customer_id: str, channel: str, purpose: str) -> bool | None:
        return self._consent.get((customer_id, channel, purpose))

    async def set_consent(self, customer_id: str, channel: str, purpose: str,
                          granted: bool) -> None:
        self._consent[(customer_id, channel, purpose)] = bool(granted)

    async def set_address(self, customer_id: str, channel: str, address: str) -> None:
        """The customer's e-mail address, phone number or device token for ``channel``."""
        self._address[(customer_id, channel)] = address

    async def address(self, customer_id: str, channel: str) -> str | None:
        return self._address.get((customer_id, channel))

    async def _reserve(self, customer_id: str, campaign: str, cost_cents: int,
                       budget_cents: int | None, now: dt.datetime, *,
                       contact: bool = True) -> str | None:
        """Count a contact (``contact``) and spend ``cost_cents``, or say which limit refuses."""
        day, week = f"d:{customer_id}:{_day(now)}", f"w:{customer_id}:{_week(now)}"
        async with self._lock:
            if contact and self._count[day] >= self.limits.per_day:
                return CAP_DAY
            if contact and self._count[week] >= self.limits.per_week:
                return CAP_WEEK
            if budget_cents is not None:
                if self._spent[campaign] + cost_cents > budget_cents:
                    return BUDGET
                self._spent[campaign] += cost_cents
            if contact:
                self._count[day] += 1
                self._count[week] += 1
        return None

    async def select(self, customer_id: str, options: Sequence[ChannelOption], campaign: str,
                     cost_cents: int, budget_cents: int | None,
                     now: dt.datetime) -> list[str]:
        """Per channel: consent and quiet hours, then a reservation on the first that passes.

        Returns one of ``reserved``, ``no_consent``, ``quiet_hours``, ``cap_per_day``,
        ``cap_per_week``, ``budget_exhausted`` or ``untried`` (eligible, not needed) per
        option, in order; at most one is ``reserved``. The same answer as Redis gives.
        """
        out: list[str] = []
        for o in options:
            granted = self._consent.get((customer_id, o.channel, o.purpose))
            ok = granted is not False if o.lenient else granted is True
            out.append(NO_CONSENT if not ok else QUIET if o.quiet else UNTRIED)
        for i, o in enumerate(options):
            if out[i] != UNTRIED:
                continue
            out[i] = await self._reserve(customer_id, campaign, cost_cents, budget_cents,
                                         now, contact=o.contact) or RESERVED
            if out[i] in (RESERVED, BUDGET):
                break
        return out

    async def spent(self, campaign: str) -> int:
        return self._spent[campaign]

    async def contacts(self, customer_id: str, now: dt.datetime) -> tuple[int, int]:
        return (self._count.get(f"d:{customer_id}:{_day(now)}", 0),
                self._count.get(f"w:{customer_id}:{_week(now)}", 0))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisState:
    """State in Redis, shared by every worker; :meth:`select` is one Lua script call.

    :meth:`select`, the call every decision makes, goes over one pipelined connection per
    worker (:mod:`marketloop.execution._resp`, cheaper than redis-py: see its docstring);
    the rest uses redis-py.

    Parameters
    ----------
    url : str
        ``redis://host:port/db``.
    limits : Limits
        Contact caps.
    prefix : str, default="ml"
        Key prefix (tests use a fresh one each).
    timeout_s : float, default=0.25
        Socket timeout: a Redis that does not answer costs at most this long per request
        before the service answers in degraded mode (a refused connection fails at once).
    """

    kind = "redis"

    def __init__(self, url: str, limits: Limits, *, prefix: str = "ml",
                 timeout_s: float = 0.25) -> None:
        import redis.asyncio as aioredis

        from marketloop.execution._resp import PipelinedRedis

        self.limits = limits
        self.prefix = prefix
        self._redis = aioredis.from_url(url, socket_timeout=timeout_s,
                                        socket_connect_timeout=timeout_s,
                                        decode_responses=True)
        self._pipe = PipelinedRedis(url, timeout_s=timeout_s)

    async def _call(self, coro):  # noqa: ANN001, ANN202 - any redis coroutine
        from redis.exceptions import RedisError

        from marketloop.execution._resp import ReplyError

        try:
            return await coro
        except (TimeoutError, RedisError, ReplyError, OSError) as exc:
            raise StateUnavailable(f"redis: {type(exc).__name__}: {exc}") from None

    async def consent(self, customer_id: str, channel: str, purpose: str) -> bool | None:
        value = await self._call(self._redis.hget(f"{self.prefix}:consent:{customer_id}",
                                                  f"{channel}:{purpose}"))
        return None if value is None else value == "1"

    async def set_consent(self, customer_id: str, channel: str, purpose: str,
                          granted: bool) -> None:
        await self._call(self._redis.hset(f"{self.prefix}:consent:{customer_id}",
                                          f"{channel}:{purpose}", "1" if granted else "0"))

    async def set_address(self, customer_id: str, channel: str, address: str) -> None:
        await self._call(self._redis.hset(f"{self.prefix}:consent:{customer_id}",
                                          f"address:{channel}", address))

    async def address(self, customer_id: str, channel: str) -> str | None:
        return await self._call(self._redis.hget(f"{self.prefix}:consent:{customer_id}",
                                                 f"address:{channel}"))

    async def select(self, customer_id: str, options: Sequence[ChannelOption], campaign: str,
                     cost_cents: int, budget_cents: int | None,
                     now: dt.datetime) -> list[str]:
        """As :meth:`MemoryState.select`, atomically in Redis (one Lua script call)."""
        p = self.prefix
        keys = [f"{p}:consent:{customer_id}", f"{p}:cap:d:{customer_id}:{_day(now)}",
                f"{p}:cap:w:{customer_id}:{_week(now)}", f"{p}:spent:{campaign}"]
        args: list[object] = [self.limits.per_day, self.limits.per_week,
                              -1 if budget_cents is None else int(budget_cents),
                              int(cost_cents), 2 * 86_400, 8 * 86_400, len(options)]
        for o in options:
            args += [f"{o.channel}:{o.purpose}", int(o.lenient), int(o.quiet), int(o.contact)]
        codes = await self._call(self._pipe.evalsha(_SELECT_LUA, keys, args))
        return [_SELECT_CODES[int(c)] for c in codes]

    async def spent(self, campaign: str) -> int:
        return int(await self._call(self._redis.get(f"{self.prefix}:spent:{campaign}")) or 0)

    async def contacts(self, customer_id: str, now: dt.datetime) -> tuple[int, int]:
        p = self.prefix
        day, week = await self._call(self._redis.mget(
            f"{p}:cap:d:{customer_id}:{_day(now)}", f"{p}:cap:w:{customer_id}:{_week(now)}"))
        return int(day or 0), int(week or 0)

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._redis.ping()))
        except StateUnavailable:
            return False

    async def close(self) -> None:
        self._pipe.close()
        await self._redis.aclose()


def make_state(url: str, limits: Limits, *, prefix: str = "ml",
               timeout_s: float = 0.25) -> MemoryState | RedisState:
    """``memory`` or a Redis URL -> the state store."""
    if url == "memory":
        return MemoryState(limits)
    return RedisState(url, limits, prefix=prefix, timeout_s=timeout_s)


__all__ = ["BUDGET", "CAP_DAY", "CAP_WEEK", "NO_CONSENT", "QUIET", "RESERVED", "UNTRIED",
           "ChannelOption", "MemoryState", "RedisState", "State", "StateUnavailable",
           "make_state"]
