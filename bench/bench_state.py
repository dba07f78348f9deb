"""CPU per `RedisState.select` (the decision path's one Redis call) beside redis.asyncio's own.

The same Lua script with the same keys and arguments, on the same Redis, in the same run:
ours over the pipelined connection of ``marketloop.execution._resp``, the peer through
``redis.asyncio``'s ``register_script`` (the library's way of calling a script). Each side
makes the calls one at a time, then 50 at once; CPU time of this process per call is
printed (Redis' own time is not in it), with the ratio.

Run: .venv/bin/python bench/bench_state.py [N_CALLS] [REDIS_URL]
(default 5,000 and redis://127.0.0.1:6379/0; ``bash scripts/services.sh start`` first).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
import uuid

import redis.asyncio as aioredis
import uvloop

from marketloop.execution.config import Limits
from marketloop.execution.state import _SELECT_LUA, ChannelOption, RedisState, _day, _week


async def _measure(call, n: int) -> tuple[float, float]:  # noqa: ANN001 - a coroutine function
    """CPU µs per call, one at a time, then 50 concurrent."""
    for i in range(200):
        await call(i)
    cpu = time.process_time()
    for i in range(n):
        await call(i)
    sequential = (time.process_time() - cpu) / n * 1e6

    async def worker(k: int) -> None:
        for i in range(k, n, 50):
            await call(i)

    cpu = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(50)))
    return sequential, (time.process_time() - cpu) / n * 1e6


async def main(n: int, url: str) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    state = RedisState(url, Limits(per_day=10**9, per_week=10**9), prefix=prefix)
    now = dt.datetime.now(dt.UTC)
    options = [ChannelOption("app", "personalisation", lenient=True, contact=False)]

    async def ours(i: int) -> object:
        return await state.select(f"c{i % 100}", options, "camp", 0, None, now)

    peer_client = aioredis.from_url(url, socket_timeout=0.25)
    script = peer_client.register_script(_SELECT_LUA)
    day, week = _day(now), _week(now)

    async def peer(i: int) -> object:
        c = f"c{i % 100}"
        keys = [f"{prefix}:consent:{c}", f"{prefix}:cap:d:{c}:{day}",
                f"{prefix}:cap:w:{c}:{week}", f"{prefix}:spent:camp"]
        args = [10**9, 10**9, -1, 0, 172_800, 691_200, 1, "app:personalisation", 1, 0, 0]
        return await script(keys=keys, args=args)

    print(f"load average before: {os.getloadavg()}")
    ours_seq, ours_conc = await _measure(ours, n)
    peer_seq, peer_conc = await _measure(peer, n)
    print(f"load average after: {os.getloadavg()}")
    print(f"{'client':38} {'one at a time':>14} {'50 at once':>11}  (CPU µs per call)")
    print(f"{'marketloop RedisState.select':38} {ours_seq:>14.0f} {ours_conc:>11.0f}")
    print(f"{'redis.asyncio register_script call':38} {peer_seq:>14.0f} {peer_conc:>11.0f}")
    print(f"ratio peer/ours: {peer_seq / ours_seq:.1f}x one at a time, "
          f"{peer_conc / ours_conc:.1f}x with 50 in flight")
    await state.close()
    await peer_client.aclose()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000,
                    sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/0"))
