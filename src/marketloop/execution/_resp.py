"""One pipelined connection to Redis for the decision path's script call.

Through redis-py's asyncio client a script call costs 1.5-1.8x the CPU of this one made
one at a time, and 4-6x with 50 in flight (``bench/bench_state.py``): command packing,
the connection pool, a timeout context per read and observability hooks. Here every
request of a worker shares one connection: a command is queued the moment it is made,
the queue goes out in one write per turn of the event loop, and Redis, which answers in
order, resolves the callers' futures in turn; replies are parsed by hiredis, Redis' own C
parser. Everything else in :class:`~marketloop.execution.state.RedisState` stays on
redis-py.

A connection that fails or does not answer within the timeout is closed: every call
waiting on it fails (the caller answers in degraded mode) and the next call connects again.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence

import hiredis
from redis.connection import parse_url


class ReplyError(Exception):
    """Redis answered a command with an error."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[object]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.unsent: list[bytes] = []

    def send(self, loop: asyncio.AbstractEventLoop, command: bytes) -> None:
        """Queue a command; the queue goes out in one write when the loop next turns."""
        if not self.unsent:
            loop.call_soon(self.flush)
        self.unsent.append(command)

    def flush(self) -> None:
        if self.transport is not None and self.unsent:
            self.transport.write(b"".join(self.unsent))
        self.unsent.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            if future.done():  # its caller gave up: the reply is consumed all the same
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ReplyError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.unsent.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"connection to Redis lost ({exc})"))


def encode(args: Sequence[object]) -> bytes:
    """A command as the RESP array of bulk strings Redis reads."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


class PipelinedRedis:
    """Commands to one Redis over one shared connection, replies matched in order.

    Parameters
    ----------
    url : str
        ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
        ``unix:///path?db=N``, as redis-py reads it.
    timeout_s : float
        How long a call, or connecting, may take before it fails.
    """

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._options = parse_url(url)
        self._tls = url.startswith("rediss://")
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._scripts: dict[str, bytes] = {}

    async def call(self, *args: object) -> object:
        """Send one command and wait for its reply.

        Raises
        ------
        ReplyError
            If Redis answered with an error.
        OSError, TimeoutError
            If Redis cannot be reached or does not answer in time.
        """
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol is None or protocol.transport is None or self._loop is not loop:
            protocol = await self._connect(loop)
        return await self._send(loop, protocol, encode(args))

    async def evalsha(self, script: str, keys: Sequence[object], args: Sequence[object]) -> object:
        """Run a Lua script by its SHA-1, loading it first where Redis does not know it."""
        sha = self._scripts.get(script)
        if sha is not None:
            try:
                return await self.call("EVALSHA", sha, len(keys), *keys, *args)
            except ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
        self._scripts[script] = sha = await self.call("SCRIPT", "LOAD", script)  # type: ignore[assignment]
        return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def _send(
        self, loop: asyncio.AbstractEventLoop, protocol: _Protocol, command: bytes
    ) -> object:
        future: asyncio.Future[object] = loop.create_future()
        protocol.waiting.append(future)
        protocol.send(loop, command)
        expiry = loop.call_later(self.timeout_s, self._expire, protocol, future)
        try:
            return await future
        finally:
            expiry.cancel()

    def _expire(self, protocol: _Protocol, future: asyncio.Future[object]) -> None:
        """A call not answered in time: the connection is dropped with everything on it."""
        if not future.done():
            future.set_exception(TimeoutError(f"Redis did not answer within {self.timeout_s}s"))
            _drop(protocol, abort=True)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        if self._connecting is not None and self._loop is loop:
            return await asyncio.shield(self._connecting)
        self.close()
        self._loop = loop
        self._connecting = loop.create_future()
        try:
            protocol = await asyncio.wait_for(self._open(loop), self.timeout_s)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self._connecting.cancel()
            else:
                self._connecting.set_exception(exc)
                self._connecting.exception()  # retrieved: callers waiting get it raised
            self._connecting = None
            raise
        self._connecting.set_result(protocol)
        self._connecting = None
        self._protocol = protocol
        return protocol

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self._options
        if "path" in o:
            _, protocol = await loop.create_unix_connection(_Protocol, o["path"])
        else:
            _, protocol = await loop.create_connection(
                _Protocol,
                o.get("host", "localhost"),
                int(o.get("port", 6379)),
                ssl=ssl.create_default_context() if self._tls else None,
            )
        if o.get("password"):
            auth = [o["username"], o["password"]] if o.get("username") else [o["password"]]
            await self._send(loop, protocol, encode(["AUTH", *auth]))
        if int(o.get("db", 0) or 0):
            await self._send(loop, protocol, encode(["SELECT", int(o["db"])]))
        return protocol

    def close(self) -> None:
        """Drop the connection (calls waiting on it fail); the next call connects again."""
        if self._protocol is not None:
            _drop(self._protocol, abort=False)
        self._protocol = None


def _drop(protocol: _Protocol, *, abort: bool) -> None:
    """Close the connection now: no later call may be written to it (its loss is told soon)."""
    transport, protocol.transport = protocol.transport, None
    if transport is None:
        return
    try:
        transport.abort() if abort else transport.close()
    except RuntimeError:  # its event loop is closed already: the socket went with it
        pass
