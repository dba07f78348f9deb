"""The decision path's pipelined Redis connection, against a real Redis (and a mute server)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from marketloop.execution._resp import PipelinedRedis, ReplyError, encode

SCRIPT = "return {KEYS[1], ARGV[1]}"


def test_the_encoding_is_redis_protocol() -> None:
    assert encode(["SET", "k", 12, b"\x00v"]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\x00v\r\n"
    )


def test_concurrent_calls_each_get_their_own_reply(redis_url: str) -> None:
    async def run() -> list[object]:
        pipe = PipelinedRedis(redis_url, timeout_s=2)
        try:
            return await asyncio.gather(*(pipe.call("ECHO", f"m{i}") for i in range(500)))
        finally:
            pipe.close()

    assert asyncio.run(run()) == [f"m{i}".encode() for i in range(500)]


def test_errors_scripts_and_the_database_number(redis_url: str) -> None:
    key = f"t{uuid.uuid4().hex[:10]}"
    direct = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")

    async def run() -> tuple[object, ...]:
        pipe = PipelinedRedis(redis_url.rsplit("/", 1)[0] + "/3", timeout_s=2)
        try:
            with pytest.raises(ReplyError, match="wrong number of arguments"):
                await pipe.call("GET")
            await pipe.call("SET", key, "in-db-3")
            first = await pipe.evalsha(SCRIPT, [key], ["a"])
            direct.script_flush()  # Redis forgets the script: it is loaded again
            second = await pipe.evalsha(SCRIPT, [key], ["b"])
            return first, second
        finally:
            pipe.close()

    try:
        assert asyncio.run(run()) == ([key.encode(), b"a"], [key.encode(), b"b"])
        assert direct.get(key) == b"in-db-3"
    finally:
        direct.delete(key)
        direct.close()


def test_a_dropped_connection_fails_its_calls_and_the_next_call_reconnects(
    redis_url: str,
) -> None:
    direct = redis.Redis.from_url(redis_url)
    name = f"pipe-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[object, object]:
        pipe = PipelinedRedis(redis_url, timeout_s=2)
        try:
            await pipe.call("CLIENT", "SETNAME", name)
            own = await pipe.call("CLIENT", "ID")  # only this connection is killed
            assert direct.client_kill_filter(_id=own) == 1
            with pytest.raises((ConnectionError, OSError)):
                for _ in range(50):  # the loss shows on the first call after it
                    await pipe.call("PING")
            return await pipe.call("PING"), await pipe.call("CLIENT", "GETNAME")
        finally:
            pipe.close()

    try:
        assert asyncio.run(run()) == (b"PONG", None)  # a new connection, without the name
    finally:
        direct.close()


def test_a_server_that_does_not_answer_times_out_every_call_and_is_dropped() -> None:
    async def run() -> tuple[int, float]:
        connections = 0

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await reader.read()  # reads, never answers
            writer.close()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pipe = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for _ in range(3):
                with pytest.raises(TimeoutError):
                    await pipe.call("PING")
        finally:
            pipe.close()
            server.close()
        return connections, loop.time() - started

    connections, took = asyncio.run(run())
    assert connections == 3  # each timeout dropped the connection; the next call made one
    assert took < 1.0


def test_an_unreachable_redis_fails_at_once() -> None:
    async def run() -> None:
        pipe = PipelinedRedis("redis://127.0.0.1:1/0", timeout_s=1)
        with pytest.raises(OSError):
            await pipe.call("PING")

    asyncio.run(run())


def test_one_client_serves_one_event_loop_after_another(redis_url: str) -> None:
    pipe = PipelinedRedis(redis_url, timeout_s=2)
    assert asyncio.run(pipe.call("PING")) == b"PONG"
    assert asyncio.run(pipe.call("ECHO", "again")) == b"again"  # a new loop: a new connection
    pipe.close()
