"""Shared fixtures: real servers (started by scripts/services.sh), real data (MARKETLOOP_DATA)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

IN_CI = os.environ.get("CI") == "true"
PG_URL = os.environ.get("MARKETLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MARKETLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, why: str) -> None:
    """Skip with the reason; under CI=true a missing server is a failure, not a skip."""
    message = f"{what} not available ({why}); `bash scripts/services.sh start` starts it"
    if IN_CI:
        pytest.fail(message + " — required under CI=true")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The URL of the test PostgreSQL server, after checking it answers."""
    try:
        import psycopg

        with psycopg.connect(
            PG_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3
        ):
            pass
    except Exception as exc:  # any failure to connect means: no server here
        _unavailable("PostgreSQL at 127.0.0.1:5432", str(exc).splitlines()[0])
    return PG_URL


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty schema on the test server, dropped afterwards; its URL selects it."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{pg_server_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_server_url, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the test Redis server, after checking it answers PING."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        _unavailable("Redis at 127.0.0.1:6379", str(exc).splitlines()[0])
    return REDIS_URL


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data sets named by MARKETLOOP_DATA; skips when it is not set."""
    value = os.environ.get("MARKETLOOP_DATA")
    if not value:
        pytest.skip("real data sets not available: set MARKETLOOP_DATA to the data folder")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"MARKETLOOP_DATA={value} is not a folder")
    return path
