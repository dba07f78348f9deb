"""How late a nearly idle process wakes: the host's stalls, apart from the server's.

Run as its own process (``python bench/_stallprobe.py SECONDS``) beside a load: it sleeps
1 ms at a time for ``SECONDS`` and prints one JSON line with its worst wake-up delay and
how many wake-ups came more than 10 ms and 50 ms late. It uses no CPU to speak of, so on
a machine whose other processes are busy the kernel still runs it within a few ms; a
wake-up 50 ms late means the whole machine was not running (the hypervisor's steal, or a
stall of the host), and a server's slow answers at that moment are not its own.
"""

from __future__ import annotations

import json
import sys
import time


def probe(seconds: float, tick_s: float = 0.001) -> dict[str, float]:
    """Sleep ``tick_s`` at a time for ``seconds``; the late wake-ups' figures (ms)."""
    worst = 0.0
    over_10 = over_50 = 0
    end = time.perf_counter() + seconds
    before = time.perf_counter()
    while before < end:
        time.sleep(tick_s)
        now = time.perf_counter()
        late = (now - before - tick_s) * 1000.0
        worst = max(worst, late)
        over_10 += late > 10.0
        over_50 += late > 50.0
        before = now
    return {"worst_ms": round(worst, 1), "late_10ms": over_10, "late_50ms": over_50}


if __name__ == "__main__":
    print(json.dumps(probe(float(sys.argv[1]))))
