"""Warehouse connections, canonical tables and the few backend-specific operations.

Warehouse logic is written as Ibis expressions elsewhere; this module holds what Ibis does
not express: opening a connection from a URL, transactions, and the ``INSERT ... SELECT`` /
``DELETE ... WHERE key IN (SELECT ...)`` statements that publish an ingest run atomically.
The statements are built around SQL that Ibis compiles from expressions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import ibis
from ibis.backends import BaseBackend

from marketloop.config import DEFAULT_WAREHOUSE
from marketloop.data.schema import TABLES, TableContract
from marketloop.exceptions import ConfigError, SchemaError, UnsupportedBackendError, describe

Backend = Literal["duckdb", "postgres"]


def backend_of(con: BaseBackend) -> Backend:
    """The name of ``con``'s backend, one of the backends marketloop supports."""
    name = con.name
    if name not in ("duckdb", "postgres"):
        raise UnsupportedBackendError(
            describe("warehouse connection", "a DuckDB or PostgreSQL backend", repr(name))
        )
    return name  # type: ignore[return-value]


def connect(url: str | None = None, *, must_exist: bool = False,
            lock_wait_s: float = 0.0,
            on_lock_wait: Callable[[], None] | None = None) -> BaseBackend:
    """Open the warehouse at ``url``.

    Parameters
    ----------
    url : str, optional
        ``duckdb:///path/to/file.duckdb`` (default ``duckdb:///marketloop.duckdb``),
        ``duckdb://`` for an in-memory warehouse, or ``postgresql://user@host:port/db``
        (``?options=-csearch_path%3Dschema`` selects a schema).
    must_exist : bool, default=False
        Refuse a DuckDB file that does not exist yet instead of creating it (commands that
        only read a warehouse would otherwise leave an empty file behind).
    lock_wait_s : float, default=0.0
        How long to keep trying while another process holds a DuckDB file's lock (DuckDB
        lets one process write a file at a time); 0 refuses at once. The service's workers
        start together and each reads the warehouse once: they wait for one another.
    on_lock_wait : callable, optional
        Called once if the open had to wait for another process's lock (the file is
        shared: the decision log's writer then stops holding its connection).

    Returns
    -------
    ibis.backends.BaseBackend
        An Ibis connection. DuckDB sessions run in UTC.

    Raises
    ------
    ConfigError
        If the URL's scheme is not supported or the warehouse cannot be opened.
    """
    url = url or DEFAULT_WAREHOUSE
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        if scheme == "duckdb":
            file = duckdb_file(url)
            if file is not None:
                _check_duckdb_file(url, file)
                if must_exist and not file.exists():
                    raise ConfigError(describe(
                        f"warehouse {url}", "an existing warehouse", f"no file {file}",
                        "Load data first: marketloop ingest FILE --warehouse " + url))
            con = _open_duckdb(":memory:" if file is None else str(file), lock_wait_s,
                               on_lock_wait)
            con.raw_sql("SET TimeZone = 'UTC'")
            con.raw_sql("SET enable_progress_bar = false")  # it would write into --json output
            return con
        if scheme in ("postgresql", "postgres"):
            return _connect_postgres(url)
    except ConfigError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            describe(f"warehouse {url}", "a warehouse that can be opened", _first_line(exc))
        ) from None
    except Exception as exc:  # driver errors (duckdb.IOException, psycopg.OperationalError)
        raise ConfigError(
            describe(f"warehouse {url}", "a warehouse that can be opened", _first_line(exc))
        ) from None
    raise ConfigError(
        describe(
            "--warehouse",
            "a URL starting with duckdb:// or postgresql://",
            repr(url),
            "Example: duckdb:///marketloop.duckdb",
        )
    )


def _open_duckdb(path: str, lock_wait_s: float,
                 on_lock_wait: Callable[[], None] | None = None) -> BaseBackend:
    """``ibis.duckdb.connect(path)``, retried while another process holds the file's lock;
    ``on_lock_wait()`` before the first wait."""
    import time

    deadline = time.monotonic() + lock_wait_s
    pause = 0.02
    waited = False
    while True:
        try:
            return ibis.duckdb.connect(path)
        except Exception as exc:  # duckdb.IOException: "Could not set lock on file ..."
            if "could not set lock" not in str(exc).lower() or time.monotonic() + pause > deadline:
                raise
        if not waited and on_lock_wait is not None:
            on_lock_wait()
        waited = True
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def duckdb_file(url: str) -> Path | None:
    """The database file a ``duckdb://`` URL names; ``None`` for in-memory or another scheme.

    Three slashes start a relative path (``duckdb:///shop.duckdb``), four an absolute one.
    """
    if not url.startswith("duckdb://") or is_in_memory(url):
        return None
    path = url[len("duckdb://") :]
    if path.startswith("//"):
        return Path("/" + path.lstrip("/"))
    return Path(path.removeprefix("/"))


_DUCKDB_MAGIC = b"DUCK"  # bytes 8-12 of every DuckDB database file


def is_in_memory(url: str) -> bool:
    """Whether ``url`` names an in-memory DuckDB warehouse (``duckdb://``, ``duckdb:///:memory:``)."""
    if not url.startswith("duckdb://"):
        return False
    path = url[len("duckdb://") :].lstrip("/")
    return path in ("", ":memory:")


def _check_duckdb_file(url: str, path: Path) -> None:
    """Refuse a DuckDB path that is a folder, another kind of file, or in a missing folder.

    DuckDB itself opens a path such as ``shop.csv`` as an empty in-memory database, so a
    command would succeed and keep nothing; a missing folder is most often a typo.
    """
    where = f"warehouse {url}"
    if path.is_dir():
        raise ConfigError(describe(where, "a DuckDB database file", "a folder", _EXAMPLE))
    if path.exists():
        with path.open("rb") as fh:
            head = fh.read(16)
        if head and head[8:12] != _DUCKDB_MAGIC:
            raise ConfigError(
                describe(where, "a DuckDB database file", f"{path}, which is another kind of file",
                         "Name a new file, e.g. duckdb:///shop.duckdb, or an existing warehouse.")
            )
        return
    if not path.parent.is_dir():
        raise ConfigError(
            describe(where, "a file in an existing folder", f"no folder {path.parent}",
                     f"Create it first (mkdir -p {path.parent}) or correct the path.")
        )
    if path.suffix.lower() in _DATA_SUFFIXES:
        raise ConfigError(
            describe(where, "a DuckDB database file", f"a new file named like data ({path.name})",
                     "Data files are ingested, not opened: marketloop ingest FILE "
                     "--warehouse duckdb:///shop.duckdb")
        )


_EXAMPLE = "Example: duckdb:///marketloop.duckdb"
_DATA_SUFFIXES = frozenset({".csv", ".gz", ".parquet", ".jsonl", ".json", ".ndjson", ".txt"})


@contextlib.contextmanager
def discarded_if_failed(url: str) -> Iterator[BaseBackend]:
    """Open ``url``; undo the warehouse's creation if this block created it and then failed.

    A first run that fails (a truncated file, a wrong header) leaves no warehouse behind,
    rather than an empty one that the next command would take for a loaded shop: the DuckDB
    file is removed; on PostgreSQL the canonical tables the block created are dropped while
    they are still empty.
    """
    file = duckdb_file(url)
    fresh = file is not None and not file.exists()
    con = connect(url)
    before = set(con.list_tables()) if backend_of(con) == "postgres" else set()
    try:
        yield con
    except BaseException:
        if fresh and file is not None:
            con.disconnect()
            for leftover in (file, file.with_name(file.name + ".wal")):
                leftover.unlink(missing_ok=True)
        elif backend_of(con) == "postgres":
            _drop_new_empty_tables(con, before)
        raise


def _drop_new_empty_tables(con: BaseBackend, before: set[str]) -> None:
    """Drop the canonical tables made since ``before`` that hold no rows (best effort)."""
    try:
        con.con.rollback()
        made = [t for t in TABLES if t not in before and t in set(con.list_tables())]
        if made and all(not fetch(con, con.table(t).limit(1)) for t in made):
            for name in made:
                con.drop_table(name, force=True)
            commit(con)
    except Exception:  # the failure being reported matters more than this clean-up
        pass


def _connect_postgres(url: str) -> BaseBackend:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    kwargs: dict[str, object] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "database": (parts.path or "/postgres").lstrip("/") or "postgres",
    }
    if parts.password:
        kwargs["password"] = parts.password
    schema = None
    for option in query.get("options", []):
        for item in option.split():
            if item.startswith("-csearch_path="):
                schema = item.split("=", 1)[1]
    con = ibis.postgres.connect(**kwargs)  # type: ignore[arg-type]
    if schema:
        found = con.con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                (schema,)).fetchone()
        con.con.commit()
        if found is None:  # PostgreSQL would fall back to no schema, then fail table by table
            con.disconnect()
            raise ConfigError(describe(
                f"warehouse {url}", f"a schema {schema!r} in database {kwargs['database']!r}",
                "no such schema", f'Create it first: CREATE SCHEMA "{schema}"'))
        con.raw_sql(f'SET search_path TO "{schema}"')
        con.con.commit()
    con.raw_sql("SET TIME ZONE 'UTC'")
    con.con.commit()
    return con


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def init_warehouse(con: BaseBackend) -> list[str]:
    """Create every canonical table that does not exist yet; check the ones that do.

    Returns
    -------
    list of str
        Names of the tables created by this call.

    Raises
    ------
    SchemaError
        If an existing table lacks a column its contract requires.
    """
    existing = set(con.list_tables())
    created = []
    for name, contract in TABLES.items():
        if name in existing:
            check_table(con, contract)
            continue
        con.create_table(name, schema=ibis.schema(contract.ibis_schema()))
        created.append(name)
    commit(con)
    return created


def check_table(con: BaseBackend, contract: TableContract) -> None:
    """Raise :class:`SchemaError` unless ``con``'s table has the contract's columns and types.

    Types are compared by family (text, integer, decimal, float, timestamp, boolean), so a
    backend's own spelling (``VARCHAR``, ``TIMESTAMP(6)``) passes.
    """
    hint = "Create a fresh warehouse with `marketloop init` or add the columns."
    check_columns(con, contract.name, contract.names, hint=hint)
    have = con.table(contract.name).schema()
    wrong = [f"{c.name} is {have[c.name]}, not {c.ibis_type}" for c in contract.columns
             if _family(have[c.name]) != _family(ibis.dtype(c.ibis_type))]
    if wrong:
        raise SchemaError(describe(f"warehouse table {contract.name}",
                                   "the contract's column types", "; ".join(wrong),
                                   "Create a fresh warehouse with `marketloop init`, or "
                                   "convert the columns."))


def _family(dtype: ibis.DataType) -> str:
    for family, test in (("text", dtype.is_string() or dtype.is_json()),
                         ("integer", dtype.is_integer()), ("decimal", dtype.is_decimal()),
                         ("float", dtype.is_floating()), ("timestamp", dtype.is_timestamp()),
                         ("boolean", dtype.is_boolean())):
        if test:
            return family
    return str(dtype)


def require_tables(con: BaseBackend, names: list[str], *, hint: str) -> None:
    """Raise :class:`SchemaError` unless ``con`` has every table in ``names``."""
    missing = [n for n in names if n not in set(con.list_tables())]
    if missing:
        raise SchemaError(
            describe("warehouse", f"tables {', '.join(names)}",
                     f"{', '.join(missing)} missing", hint)
        )


def check_columns(con: BaseBackend, table: str, names: list[str], *, hint: str) -> None:
    """Raise :class:`SchemaError` unless ``con``'s ``table`` has every column in ``names``."""
    have = con.table(table).schema()
    missing = [c for c in names if c not in have]
    if missing:
        raise SchemaError(
            describe(
                f"warehouse table {table}",
                f"columns {', '.join(names)}",
                f"{', '.join(have.names)} ({', '.join(missing)} missing)",
                hint,
            )
        )


def ensure_warehouse(con: BaseBackend) -> None:
    """Create the canonical tables if the warehouse is new (``marketloop init`` does the same)."""
    if not set(TABLES) <= set(con.list_tables()):
        init_warehouse(con)


def commit(con: BaseBackend) -> None:
    """Commit what Ibis left open on PostgreSQL (DuckDB runs in autocommit)."""
    if backend_of(con) == "postgres":
        con.con.commit()


def quote(con: BaseBackend, name: str) -> str:
    """``name`` quoted as an identifier for ``con``'s SQL dialect."""
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def transaction(con: BaseBackend) -> Iterator[None]:
    """Run the block in one database transaction: all of its statements, or none."""
    raw = con.con
    if backend_of(con) == "duckdb":
        raw.begin()
        try:
            yield
        except BaseException:
            raw.rollback()
            raise
        raw.commit()
    else:
        raw.commit()  # close any implicit transaction psycopg opened
        with raw.transaction():
            yield


def serialise_writes(con: BaseBackend, tables: Iterable[str]) -> None:
    """Inside :func:`transaction`: wait until no other session's transaction writes
    ``tables``, then hold them to the commit.

    A check-then-insert (keep a key once) is only safe when two writers cannot both check
    before either inserts. PostgreSQL: a transaction-level advisory lock per schema and
    table, taken in sorted order by every caller (ingest, the decision log's writers), so
    two transactions never wait on each other's locks. DuckDB: nothing; one process at a
    time writes the file. Call it once per transaction, before the first check.
    """
    if backend_of(con) == "postgres":
        for table in sorted(set(tables)):
            con.con.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.' || %s))",
                (table,))


@contextlib.contextmanager
def _duckdb_setting(con: BaseBackend, name: str, value: Callable[[str], str]) -> Iterator[None]:
    """Inside the block, DuckDB's setting ``name`` is ``value(current text)``; then restored.

    PostgreSQL: nothing changes.
    """
    if backend_of(con) != "duckdb":
        yield
        return
    raw = con.con
    before = str(raw.execute(f"SELECT current_setting('{name}')").fetchone()[0])
    raw.execute(f"SET {name} = '{value(before)}'")
    try:
        yield
    finally:
        raw.execute(f"SET {name} = '{before}'")


def unordered_writes(con: BaseBackend) -> contextlib.AbstractContextManager[None]:
    """Let DuckDB write rows in any order inside the block (a parallel insert is faster).

    The warehouse never relies on the order rows were stored in (queries order what they
    need), so publishing may drop DuckDB's ``preserve_insertion_order``; record numbers
    were fixed before. The setting is restored afterwards. PostgreSQL: nothing changes.
    """
    return _duckdb_setting(con, "preserve_insertion_order", lambda _before: "false")


def hash_joins_as_written(
    con: BaseBackend, enabled: bool = True
) -> contextlib.AbstractContextManager[None]:
    """Make DuckDB build its hash joins on the right side of each join inside the block.

    DuckDB picks the build side from estimated sizes, and its estimate of a filtered scan
    can be far off: ten million typed rows filtered on their reason were taken for fewer
    than the six million orders they were checked against, so the lines (every column of
    them) went into the hash table. The caller, who knows the exact sizes, passes
    ``enabled`` when the right side is the smaller. The setting is restored afterwards;
    PostgreSQL: nothing changes.
    """
    if not enabled:
        return contextlib.nullcontext()

    def add(before: str) -> str:
        return ",".join([*(o for o in before.split(",") if o.strip()), "build_side_probe_side"])

    return _duckdb_setting(con, "disabled_optimizers", add)


def execute(con: BaseBackend, sql: str) -> None:
    """Run one statement on ``con``'s raw connection (inside a :func:`transaction`)."""
    if backend_of(con) == "duckdb":
        con.con.execute(sql)
    else:
        with con.con.cursor() as cur:
            cur.execute(sql)


def insert_select(con: BaseBackend, table: str, expr: ibis.Table) -> None:
    """``INSERT INTO table (columns) <expr>``, with ``expr`` compiled by Ibis."""
    columns = ", ".join(quote(con, c) for c in expr.columns)
    execute(con, f"INSERT INTO {quote(con, table)} ({columns}) {con.compile(expr)}")


def delete_keys(con: BaseBackend, table: str, keys: ibis.Table) -> None:
    """Delete the rows of ``table`` whose key columns appear in ``keys`` (an Ibis expression)."""
    cols = ", ".join(quote(con, c) for c in keys.columns)
    execute(
        con,
        f"DELETE FROM {quote(con, table)} WHERE ({cols}) IN "
        f"(SELECT {cols} FROM ({con.compile(keys)}) AS k)",
    )


def ref(name: str) -> ibis.Table:
    """An unbound reference to canonical table ``name``, for SQL compiled inside a transaction.

    Reading a table's schema from PostgreSQL through Ibis would commit the transaction; the
    contract already knows it.
    """
    return ibis.table(ibis.schema(TABLES[name].ibis_schema()), name=name)


def fetch(con: BaseBackend, expr: ibis.Table) -> list[tuple[object, ...]]:
    """Rows of ``expr``, read on the raw connection (safe inside a :func:`transaction`)."""
    sql = str(con.compile(expr))
    if backend_of(con) == "duckdb":
        return con.con.execute(sql).fetchall()
    with con.con.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def create_temp_as(con: BaseBackend, name: str, expr: ibis.Table) -> ibis.Table:
    """``CREATE TEMP TABLE name AS <expr>`` (safe inside a :func:`transaction`)."""
    execute(con, f"CREATE TEMP TABLE {quote(con, name)} AS {con.compile(expr)}")
    # reading the new table's schema through Ibis would commit; it is the expression's
    return ibis.table(expr.schema(), name=name)


def drop_table(con: BaseBackend, name: str) -> None:
    """``DROP TABLE IF EXISTS name`` (safe inside a :func:`transaction`)."""
    execute(con, f"DROP TABLE IF EXISTS {quote(con, name)}")


def insert_values(con: BaseBackend, table: str, row: dict[str, object]) -> None:
    """Insert one row of Python values (safe inside a :func:`transaction`)."""
    cols = ", ".join(quote(con, c) for c in row)
    if backend_of(con) == "duckdb":
        marks = ", ".join("?" for _ in row)
        con.con.execute(
            f"INSERT INTO {quote(con, table)} ({cols}) VALUES ({marks})", list(row.values())
        )
    else:
        marks = ", ".join("%s" for _ in row)
        with con.con.cursor() as cur:
            cur.execute(
                f"INSERT INTO {quote(con, table)} ({cols}) VALUES ({marks})", list(row.values())
            )


def stage_table(con: BaseBackend, name: str, data: object) -> ibis.Table:
    """Put a pyarrow table or pandas frame into the warehouse as a staging table.

    A temporary table on either backend: it ends with the session, so a process killed
    mid-run leaves no copy of the data behind (the caller drops it sooner with
    :func:`drop_staging`). On PostgreSQL, Ibis commits when it creates one.
    """
    return con.create_table(name, data, temp=True)


def drop_staging(con: BaseBackend, names: list[str]) -> None:
    """Drop staging tables made by :func:`stage_table` (outside a transaction)."""
    for name in names:
        try:
            con.drop_table(name, force=True)
        except Exception:  # already gone with the session (DuckDB temp tables)
            pass
    commit(con)
