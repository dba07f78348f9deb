"""CLI command ``marketloop serve``: the real-time decision service under uvicorn."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from marketloop.cli._app import WarehouseOption, app, err_console, warehouse_url
from marketloop.exceptions import ConfigError, describe

_ENV = "MARKETLOOP_SERVE_OPTIONS"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (>1 needs --state redis://).")
                       ] = 1,
    state: Annotated[str | None, typer.Option(help="memory, or redis://host:port/db.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with a [service] table.")
                      ] = None,
    warehouse: WarehouseOption = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve POST /v1/events, /v1/decide, /v1/outcomes; GET /healthz, /metrics; docs at /docs.

    With no config and no trained models it starts on the embedded default (in-process
    state, the DuckDB warehouse for the decision log) and decides by rules. API keys come
    from the config's [service] api_keys, or MARKETLOOP_API_KEY (one key with every scope);
    with neither, a key is made for this run and printed.

    Example: MARKETLOOP_API_KEY=dev-key marketloop serve --port 8000
    """
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from marketloop.execution.config import load_service_config

    if log_level.lower() not in LOG_LEVELS:
        raise ConfigError(describe("--log-level", f"one of {', '.join(LOG_LEVELS)}",
                                   repr(log_level)))
    log_level = log_level.lower()
    if not 1 <= port <= 65_535:
        raise ConfigError(describe("--port", "a port in 1-65535", str(port)))
    if workers < 1:
        raise ConfigError(describe("--workers", "at least 1", str(workers)))
    checked = load_service_config(config, state=state)  # a bad config stops here, exit 2
    # --warehouse wins over the config's warehouse_url, as --state wins over its state
    options = {"config": None if config is None else str(config), "state": state,
               "warehouse_url": warehouse_url(warehouse or checked.warehouse_url)}
    from marketloop.execution._dispatching import check_dispatch_config
    from marketloop.execution._startup import load_plan

    check_dispatch_config(checked)  # triggers, channels, outbox: before the banner
    load_plan(checked.plan)
    if workers > 1 and checked.state == "memory":
        raise ConfigError(describe(
            "--workers", "--state redis://... when more than one worker serves",
            f"{workers} workers with in-process state",
            "Caps and budgets must be shared: start Redis and pass --state redis://127.0.0.1:6379/0."))
    if not checked.keys():
        os.environ["MARKETLOOP_API_KEY"] = secrets.token_urlsafe(24)
        err_console.print(f"no API key configured; this run's key (every scope): "
                          f"{os.environ['MARKETLOOP_API_KEY']}", markup=False, soft_wrap=True)
    from marketloop.data.warehouse import connect, ensure_warehouse

    con = connect(options["warehouse_url"])  # once, before the workers start
    ensure_warehouse(con)
    con.disconnect()
    os.environ[_ENV] = json.dumps(options)
    err_console.print(f"marketloop serve: http://{host}:{port} (docs at /docs), {workers} "
                      f"worker(s), state {checked.state}, policy "
                      f"{'plan' if checked.plan else 'rules'}", markup=False, soft_wrap=True)
    uvicorn.run("marketloop.cli.serve:app_factory", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=False,
                loop="uvloop", http="httptools")


def app_factory():  # noqa: ANN201 - a FastAPI app, built in each worker process
    """The app for ``marketloop serve``'s options (passed to workers in the environment)."""
    from marketloop.execution.config import load_service_config
    from marketloop.execution.service import create_app

    options = json.loads(os.environ.get(_ENV, "{}"))
    config = load_service_config(options.get("config"), state=options.get("state"))
    return create_app(config, warehouse_url=options.get("warehouse_url") or config.warehouse_url)
