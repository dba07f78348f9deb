"""The decision service: FastAPI routes over the decision pipeline, state and decision log.

``create_app(config)`` builds the app; ``marketloop serve`` runs it under uvicorn. Routes:
``POST /v1/events``, ``POST /v1/decide``, ``POST /v1/outcomes``, ``GET
/v1/decisions/{id}``, ``PUT /v1/customers/{id}/consents``, ``GET /healthz``, ``GET
/metrics`` (Prometheus text) and the OpenAPI page at ``/docs``. Every response carries an
``X-Request-ID`` (the caller's, or a new one); error bodies carry it too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import inspect
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import TypeAdapter
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from marketloop.execution import _api
from marketloop.execution._dispatching import Dispatching
from marketloop.execution._guard import RequestGuard
from marketloop.execution._ids import new_id
from marketloop.execution._metrics import Metrics
from marketloop.execution._route import JsonBodyRoute, parse_body
from marketloop.execution._startup import load_consents, load_plan, load_responsiveness
from marketloop.execution.config import CHANNELS, ApiKey, ServiceConfig
from marketloop.execution.decide import Decider
from marketloop.execution.decide import Request as DecisionRequest
from marketloop.execution.log import DecisionLog
from marketloop.execution.state import State, StateUnavailable, make_state
from marketloop.execution.triggers import Fire


@dataclass
class Runtime:
    """What the routes share: config, state, the decision pipeline, the log, the metrics."""

    config: ServiceConfig
    state: State
    decider: Decider
    log: DecisionLog
    metrics: Metrics
    keys: dict[str, ApiKey]
    dispatch: Dispatching

    async def act(self, fire: Fire, known: bool) -> dict[str, Any]:
        """Decide for a trigger that fired, log it, queue its message."""
        req = DecisionRequest(fire.customer_id, known, fire.context,
                              (fire.channel,) if fire.channel else CHANNELS)
        started = time.perf_counter()
        decision = await self.decider.decide(req)
        trigger = fire.context.get("trigger")
        decision.dispatch = await self.dispatch.queue(
            decision, trigger if isinstance(trigger, str) else None)
        self.log.decision(decision, dict(fire.context))
        self.metrics.decided(decision, time.perf_counter() - started)
        answer = decision.to_json()  # the action in POST /v1/decide's shape
        return {"rule": fire.rule, "kind": fire.kind, "decision_id": decision.decision_id,
                "action": answer["action"], "reasons": decision.reasons,
                "dispatch": decision.dispatch}


def create_app(config: ServiceConfig, *, warehouse_url: str | None = None,
               state_prefix: str = "ml") -> FastAPI:
    """The service app for ``config``; ``warehouse_url`` overrides where the log goes."""
    state = make_state(config.state, config.limits, prefix=state_prefix,
                       timeout_s=config.state_timeout_s)
    log = DecisionLog(warehouse_url or config.warehouse_url, flush_s=config.log_flush_s,
                      writer=config.log_writer)
    runtime = Runtime(config, state, Decider(config, state, load_plan(config.plan)), log,
                      Metrics(), config.keys(), Dispatching(config, state))
    decider = runtime.decider

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.start()
        if config.load_consents and log.warehouse_url is not None:
            await load_consents(state, log.warehouse_url)
            decider.responsiveness = await run_in_threadpool(load_responsiveness,
                                                             log.warehouse_url)
        runtime.dispatch.start(runtime.act)
        gc.collect()
        gc.freeze()  # what start-up loaded is never scanned again: no long collector pauses
        # the log writer and the outbox run in threads: the event loop waits at most this
        # long for the interpreter lock while one of them works (the default is 5 ms)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        yield
        sys.setswitchinterval(interval)
        await runtime.dispatch.stop()
        log.stop()
        await state.close()

    app = FastAPI(title="marketloop decision service", version="1", lifespan=lifespan,
                  description="Events in, decisions out, under consent, caps and budgets.",
                  redirect_slashes=False,  # /v1/decide/ is a 404, not a 307 a POST may not follow
                  **_telemetry(config.opentelemetry))
    app.state.runtime = runtime
    app.add_middleware(RequestGuard, metrics=runtime.metrics,
                       max_body_bytes=config.max_body_bytes, body_timeout_s=config.body_timeout_s)
    _errors(app)
    docs = list(app.router.routes)  # /openapi.json, /docs, /redoc: matched after the API's
    _routes(app, runtime)
    app.router.routes[:] = [r for r in app.router.routes if r not in docs] + docs
    _document_keys(app)
    return app


def _document_keys(app: FastAPI) -> None:
    """The API keys in the OpenAPI schema: both ways of sending one, on every route that
    needs one (those that answer 401), so /docs can send requests with a key."""
    built = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = built()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer KEY"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if "401" in operation.get("responses", {}):
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _scope(runtime: Runtime, scope: str):  # noqa: ANN202 - a FastAPI dependency
    async def check(request: Request) -> ApiKey:
        # headers read directly: FastAPI's Header() parameters cost ~0.1 ms a request
        token = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization")
        if authorization is not None:  # another scheme (e.g. a proxy's Basic) is not ours
            kind, _, value = authorization.partition(" ")
            bearer = value.strip() if kind.lower() == "bearer" else None
            if bearer and token and bearer != token:
                raise HTTPException(401, "two different API keys sent (Authorization: Bearer "
                                    "and X-API-Key); send one", headers={"WWW-Authenticate":
                                                                         "Bearer"})
            token = bearer or token
        if not token:
            raise HTTPException(401, "missing API key: send 'Authorization: Bearer KEY' or "
                                "'X-API-Key: KEY'", headers={"WWW-Authenticate": "Bearer"})
        key = runtime.keys.get(token)
        if key is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if scope not in key.scopes:
            raise HTTPException(403, f"the key {key.name!r} lacks the scope {scope!r}; it has "
                                f"{', '.join(key.scopes) or 'none'}")
        return key
    return check


def _routes(app: FastAPI, rt: Runtime) -> None:
    events_key = Depends(_scope(rt, "events:write"))
    decide_key = Depends(_scope(rt, "decide"))
    admin_key = Depends(_scope(rt, "admin"))
    responses: dict[int | str, dict[str, Any]] = {
        c: {"model": _api.ErrorOut} for c in (400, 401, 403, 404, 408, 413, 422, 503)}

    def post(path: str, **options: Any):  # noqa: ANN202 - a decorator
        """``app.post`` for a hot JSON endpoint ``(body, request)``: see ``_route``."""
        def register(endpoint: Any) -> Any:
            app.router.add_api_route(path, endpoint, methods=["POST"], responses=responses,
                                     route_class_override=JsonBodyRoute, **options)
            return endpoint
        return register

    @post("/v1/decide", response_model=_api.DecisionOut, dependencies=[decide_key])
    async def decide(body: _api.DecideIn, request: Request) -> Response:
        started = time.perf_counter()
        who, known = body.who
        req = DecisionRequest(who, known, body.context,
                              tuple(body.channels) if body.channels else
                              CHANNELS, body.campaign)
        decision = await rt.decider.decide(req)
        if decision.channel != "app":  # in-app: this answer is the delivery, to the site
            decision.dispatch = await rt.dispatch.queue(decision, _trigger_of(body))
        rt.log.decision(decision, body.context)
        rt.metrics.decided(decision, time.perf_counter() - started)
        out = decision.to_json()
        out["request_id"] = request.state.request_id
        return _json(out)  # already the DecisionOut shape: skip re-validating it

    @post("/v1/events", response_model=_api.EventsAccepted, status_code=202,
          dependencies=[events_key])
    async def events(body: Annotated[_api.EventBatch | _api.EventIn, Body()],
                     request: Request) -> dict[str, Any]:
        batch = body.events if isinstance(body, _api.EventBatch) else [body]
        if len(batch) > rt.config.max_batch:
            raise HTTPException(413, f"events: expected at most {rt.config.max_batch} events "
                                f"in one request; found {len(batch)}. Split the batch.")
        now = dt.datetime.now(dt.UTC)
        rows = [_event_row(event, now) for event in batch]
        fired: list[tuple[Fire, bool]] = []
        try:
            for event, row in zip(batch, rows, strict=True):
                who, _ = event.who  # visitors as anon:ID, as decisions name them
                seen = {**row, "customer_id": who, "anonymous_id": None,
                        "ts": row["ts"].replace(tzinfo=dt.UTC)}
                # a fire held from an earlier outage may be another customer's
                fired += [(f, not f.customer_id.startswith(_api.ANON_PREFIX))
                          for f in await rt.dispatch.triggers.aobserve(seen)]
        except Exception as exc:  # the once-store (Redis) is down: refuse, do not drop
            # the batch's earlier fires are claimed: they go out with the retry
            rt.dispatch.triggers.hold([fire for fire, _ in fired])
            raise HTTPException(503, f"events not accepted: trigger state unreachable "
                                f"({type(exc).__name__}); retry", headers={"Retry-After": "1"}
                                ) from None
        for event, row in zip(batch, rows, strict=True):
            rt.log.event(row)
            rt.metrics.event(event.type)
        actions = [await rt.act(fire, known) for fire, known in fired]
        return {"accepted": len(batch), "fired": actions,
                "request_id": request.state.request_id}

    @post("/v1/outcomes", response_model=_api.Accepted, status_code=202,
          dependencies=[events_key])
    async def outcomes(body: Annotated[_api.OutcomeBatch | _api.OutcomeIn, Body()],
                       request: Request) -> dict[str, Any]:
        batch = body.outcomes if isinstance(body, _api.OutcomeBatch) else [body]
        if len(batch) > rt.config.max_batch:
            raise HTTPException(413, f"outcomes: expected at most {rt.config.max_batch} in one "
                                f"request; found {len(batch)}. Split the batch.")
        now = dt.datetime.now(dt.UTC)
        for item in batch:
            rt.log.outcome(item.decision_id, item.kind, item.value, item.ts or now)
        return {"accepted": len(batch), "request_id": request.state.request_id}

    @app.get("/v1/decisions/{decision_id}", response_model=_api.DecisionOut,
             responses=responses, dependencies=[decide_key])
    async def decision(decision_id: _api.IdPath, request: Request) -> dict[str, Any]:
        found = rt.log.lookup(decision_id)
        if found is None:
            try:
                found = await run_in_threadpool(rt.log.find, decision_id)
            except Exception as exc:  # the warehouse is down or held by another process
                raise HTTPException(503, f"decision {decision_id!r}: not among the recent "
                                    f"decisions, and the warehouse could not be read "
                                    f"({type(exc).__name__}); retry",
                                    headers={"Retry-After": "1"}) from None
        if found is None:
            raise HTTPException(404, f"decision {decision_id!r}: expected a decision this "
                                "service made; found none by that id")
        return {**found, "request_id": request.state.request_id}

    consent_in: TypeAdapter[_api.ConsentIn] = TypeAdapter(_api.ConsentIn)

    @app.put("/v1/customers/{customer_id}/consents", response_model=_api.Accepted,
             responses=responses, dependencies=[admin_key], openapi_extra={"requestBody": {
                 "required": True, "content": {"application/json": {
                     "schema": _api.ConsentIn.model_json_schema()}}}})
    async def consent(customer_id: _api.CustomerPath, request: Request) -> dict[str, Any]:
        # the body is read here, after the key's check, as on the POST routes (a body
        # parameter would be parsed by FastAPI before any dependency)
        body = parse_body(consent_in, await request.body(), request.headers.get("content-type"))
        # a withdrawal cancels what waits before the state says so: else the dispatcher,
        # re-checking consent before a retry, may cancel a message first and the answer's
        # count would miss it (nothing is sent either way)
        cancelled = 0 if body.granted else await rt.dispatch.revoke(
            customer_id, body.channel, body.purpose)
        try:
            await rt.state.set_consent(customer_id, body.channel, body.purpose, body.granted)
            if body.address is not None:
                await rt.state.set_address(customer_id, body.channel, body.address)
        except StateUnavailable as exc:
            raise HTTPException(503, f"consent not stored: {exc}",
                                headers={"Retry-After": "1"}) from None
        rt.log.consent(customer_id, body.channel, body.purpose, body.granted,
                       dt.datetime.now(dt.UTC))
        return {"accepted": 1, "request_id": request.state.request_id, "cancelled": cancelled}

    @app.get("/v1/customers/{customer_id}/inbox", responses=responses,
             dependencies=[decide_key])
    async def inbox(customer_id: _api.IdPath, request: Request) -> dict[str, Any]:  # anon: too
        messages = [m.to_dict() for m in rt.dispatch.inbox(customer_id)]
        return {"customer_id": customer_id, "messages": messages,
                "request_id": request.state.request_id}

    # GET and HEAD (load balancers' probes) as two routes: one route with both methods
    # would give the schema one operationId for two operations (fastapi#13175)
    @app.head("/healthz", include_in_schema=False)
    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        up = await rt.state.ping()
        return {"status": "ok" if up and not rt.log.failing else "degraded",
                "state": {"kind": rt.state.kind, "reachable": up},
                "outbox": await run_in_threadpool(rt.dispatch.outbox.counts),
                "decision_log": {"pending": rt.log.pending, "written": rt.log.written,
                                 "errors": rt.log.errors, "rejected": rt.log.rejected,
                                 "last_error": rt.log.last_error},
                "policy": rt.decider.policy, "request_id": request.state.request_id}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        body, content_type = rt.metrics.render()
        return PlainTextResponse(body, media_type=content_type)


def _telemetry(on: bool) -> dict[str, Any]:
    """FastAPI's ``telemetry`` option (from 0.165; older versions have none to turn off)."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": on, "metrics": on, "logs": on}}


def _trigger_of(body: _api.DecideIn) -> str | None:
    named = body.context.get("trigger")
    return named if isinstance(named, str) else None


def _json(body: dict[str, Any], status: int = 200) -> Response:
    """A JSON response from a body the route built itself (no response-model pass)."""
    return Response(to_json(body), status_code=status, media_type="application/json")


def _event_row(event: _api.EventIn, now: dt.datetime) -> dict[str, object]:
    ts = event.ts or now
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return {"event_id": event.event_id or new_id(), "customer_id": event.customer_id,
            "anonymous_id": event.anonymous_id,
            "session_id": event.session_id or f"s:{event.customer_id or event.anonymous_id}",
            "ts": ts.astimezone(dt.UTC).replace(tzinfo=None), "type": event.type,
            "product_id": event.product_id, "dwell_ms": event.dwell_ms}


def _errors(app: FastAPI) -> None:
    """Error bodies: one message naming the field, the request id; never a traceback."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _relevant(exc.errors(), exc.body)
        loc = [str(p) for p in err.get("loc", ()) if p != "body" and not _is_model(str(p))]
        field = ".".join(loc) or None
        if err.get("type") == "json_invalid":
            return _error(request, 400, f"malformed JSON: {err.get('msg')}", None)
        message = f"{field or 'body'}: {err.get('msg')}"
        return _error(request, 422, message, field)

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404 and 405
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404 and message == "Not Found":
            message = f"{where}: expected a route of this service (see /docs); found none"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            # the router names the methods of the first route on the path only: name all
            allowed = ", ".join(_methods_of(request))
            headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "allow"}
            if allowed:
                headers["Allow"] = allowed
            message = f"{where}: expected method {allowed or 'another method'}"
            return _error(request, 405, message, None, headers)
        return _error(request, exc.status_code, message, None, exc.headers)

    # an unexpected error is answered by RequestGuard, inside Starlette's outermost
    # middleware, so that its 500 carries the request id and is logged with it


#: Model names pydantic puts in the location of an error inside a union of bodies.
_MODELS = {"EventBatch", "EventIn", "OutcomeBatch", "OutcomeIn", "DecideIn", "ConsentIn"}


def _is_model(part: str) -> bool:
    """True for a model's name in an error location, bare or as a validator's label.

    A model with an after-validator is labelled ``function-after[_one_id(), EventIn]``.
    """
    return part in _MODELS or (part.startswith("function-")
                               and part.rstrip("]").rsplit(", ", 1)[-1] in _MODELS)


def _relevant(errors: Sequence[Any], body: object) -> dict[str, Any]:
    """The error to report: for a one-or-batch body, the shape the caller sent."""
    batch = isinstance(body, dict) and bool({"events", "outcomes"} & set(body))
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if any(m in loc for m in ("EventBatch", "OutcomeBatch")) == batch:
            return dict(err)
    return dict(errors[0]) if errors else {"msg": "invalid request"}


def _methods_of(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path, sorted."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def _error(request: Request, status: int, message: str, field: str | None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None)
    return JSONResponse({"error": message, "field": field, "request_id": rid}, status_code=status,
                        headers=headers)


__all__ = ["Runtime", "create_app"]
