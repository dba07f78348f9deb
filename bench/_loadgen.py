"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from schedule.

Run as its own process (``python bench/_loadgen.py URL PATH RATE SECONDS CONNECTIONS
BODY_FILE [HEADER ...]``); prints one JSON line with the count, errors, throughput and
latency percentiles; with ``LOADGEN_LATENCIES=FILE`` in its environment it also saves
every latency (ms) there as a NumPy array, so tries can be pooled, and with
``LOADGEN_EXPECT=TEXT`` (several, one a line) an answer holding none of them counts
as an error, and the line says how many answers held each. A ``{i}`` in the
body is replaced by the request's number (a new customer each time). Each of
``CONNECTIONS`` keep-alive connections sends its share of the schedule; a request's
latency counts from the moment it was *due*, not when it was sent, so a server that falls
behind is charged for the wait (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

import numpy as np


async def _connection(host: str, port: int, requests: list[bytes], due: np.ndarray,
                      start: float, out: list[float], errors: list[int],
                      expect: list[bytes], matched: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    for request, t in zip(requests, due, strict=True):
        wait = start + t - time.perf_counter()  # perf_counter: uvloop's clock has 1 ms steps
        if wait > 0:
            await asyncio.sleep(wait)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        answer = await reader.readexactly(length) if length else b""
        out.append(time.perf_counter() - (start + t))
        hit = next((k for k, text in enumerate(expect) if text in answer), None)
        if hit is not None:
            matched[hit] += 1
        if status >= 400 or (expect and hit is None):
            errors.append(status)
    writer.close()


async def run(url: str, path: str, rate: float, seconds: float, connections: int,
              body: bytes, headers: list[str]) -> tuple[dict[str, object], np.ndarray]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    def request(body: bytes) -> bytes:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
                "Content-Type: application/json", f"Content-Length: {len(body)}", *headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    n = int(rate * seconds)
    if b"{i}" in body:  # a body of its own per request (e.g. a new customer each)
        requests = [request(body.replace(b"{i}", str(i).encode())) for i in range(n)]
    else:
        requests = [request(body)] * n
    expect = [t.encode() for t in os.environ.get("LOADGEN_EXPECT", "").splitlines() if t]
    matched = [0] * len(expect)
    schedule = np.arange(n) / rate
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors: list[int] = []
    wall = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, requests[k::connections],
                                       schedule[k::connections], start, latencies, errors,
                                       expect, matched)
                           for k in range(connections)))
    wall = time.perf_counter() - wall - 0.2
    lat = np.asarray(latencies) * 1000.0
    return {"requests": int(len(lat)), "errors": len(errors), "rate": rate,
            "throughput": round(len(lat) / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "max_ms": round(float(lat.max()), 3), "matched": matched}, lat


def main(argv: list[str]) -> None:
    url, path, rate, seconds, connections, body_file, *headers = argv
    body = open(body_file, "rb").read()  # noqa: SIM115 - read once
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result, latencies = asyncio.run(run(url, path, float(rate), float(seconds),
                                        int(connections), body, headers))
    if os.environ.get("LOADGEN_LATENCIES"):
        np.save(os.environ["LOADGEN_LATENCIES"], latencies)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
