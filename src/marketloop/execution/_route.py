"""A lean FastAPI route for the hot POST endpoints: one JSON body, checks, the endpoint.

FastAPI's general request handler solves a dependency graph per request, parses the
content type with ``email.message``, decodes the JSON with ``json.loads`` and validates
the result again through pydantic. For an endpoint of the shape
``async def endpoint(body: Model, request: Request)`` whose only dependencies are checks
of the request (the API-key scope), :class:`JsonBodyRoute` does the same work directly:
it runs the checks, validates the raw bytes with pydantic's own JSON parser in one pass
and calls the endpoint. The OpenAPI schema is still FastAPI's, made from the same
signature and decorator, and errors are the ones FastAPI raises
(:class:`~fastapi.HTTPException`, :class:`~fastapi.exceptions.RequestValidationError`
with locations under ``body``), so the app's error handlers answer them as before.

An endpoint may return a :class:`~starlette.responses.Response` or a JSON-able dict (sent
with the route's status code, not re-validated against its response model).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

_INVALID_JSON = "Invalid JSON: "


class JsonBodyRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` for ``endpoint(body, request)`` (module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        params = self.dependant.body_params
        if len(params) != 1 or self.dependant.path_params or self.dependant.query_params:
            raise TypeError(f"{self.path}: JsonBodyRoute takes an endpoint with one JSON body "
                            "and no path or query parameters")
        adapter: TypeAdapter[Any] = TypeAdapter(params[0].field_info.annotation)
        checks: list[Callable[[Request], Awaitable[Any]]] = [
            d.dependency for d in self.dependencies if d.dependency is not None]
        if not all(inspect.iscoroutinefunction(c) for c in checks):
            raise TypeError(f"{self.path}: JsonBodyRoute's dependencies are async checks of "
                            "the request")
        endpoint = self.endpoint
        status = self.status_code or 200

        async def handler(request: Request) -> Response:
            for check in checks:
                await check(request)
            body = parse_body(adapter, await request.body(), request.headers.get("content-type"))
            result = await endpoint(body, request)
            if isinstance(result, Response):
                return result
            return Response(to_json(result), status_code=status, media_type="application/json")

        return handler


def parse_body(adapter: TypeAdapter[Any], raw: bytes, content_type: str | None) -> Any:
    """``raw`` validated by ``adapter``; a :class:`RequestValidationError` as FastAPI's.

    An empty body is a missing body; a body that is not declared JSON
    (``application/json`` or ``application/*+json``) is refused, as FastAPI's strict
    content-type check does; malformed JSON is a ``json_invalid`` error.
    """
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}], body=None)
    if not _is_json(content_type):
        raise RequestValidationError([{
            "type": "content_type", "loc": ("body",), "input": None,
            "msg": f"expected a JSON body (Content-Type: application/json); found "
                   f"Content-Type {content_type!r}"}], body=None)
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            msg = str(errors[0]["msg"]).removeprefix(_INVALID_JSON)
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                           "msg": msg, "input": {}}], body=None) from None
        try:  # the body as sent: the error handler reports on the shape the caller chose
            body = json.loads(raw)
        except ValueError:
            body = None
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors],
                                     body=body) from None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


__all__ = ["JsonBodyRoute", "parse_body"]
