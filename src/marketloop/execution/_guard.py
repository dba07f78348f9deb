"""ASGI middleware around every route: the request id, body limits, and the last word on errors.

:class:`RequestGuard` runs inside Starlette's outermost error middleware, so what it sends
carries the request id:

- every response has an ``X-Request-ID`` (the caller's, if 1-128 printable ASCII
  characters, or a new one);
- a body over ``max_body_bytes`` is a 413, said before reading it when ``Content-Length``
  tells; a body that stops arriving for ``body_timeout_s`` is a 408; both close the
  connection (the rest of the body is never read);
- a client that goes away mid-body is counted as status 499 and logged in one line (at
  ``info`` level: ``marketloop serve --log-level info`` shows it);
- an unexpected error is a 500 with the error shape, logged with its request id and
  traceback, and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import HTTPException
from starlette.requests import ClientDisconnect

from marketloop.execution._ids import new_id
from marketloop.execution._metrics import Metrics

#: uvicorn's own error log: its handlers and --log-level apply.
log = logging.getLogger("uvicorn.error")

#: A caller's request id is used when it is 1-128 printable ASCII characters, else a new one.
_PRINTABLE = re.compile(rb"[\x21-\x7e]{1,128}")

#: The status nginx and others count a request under when the client closed it first.
CLIENT_CLOSED = 499


class BodyTooLarge(HTTPException):
    """A request body over the service's limit (413)."""

    def __init__(self, limit: int, found: str) -> None:
        super().__init__(413, f"body: expected at most {limit:,} bytes; found {found}. Send "
                         "less (split a batch, trim the context).", {"Connection": "close"})


class BodyTooSlow(HTTPException):
    """A request body that stopped arriving (408)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"body: expected the whole body within {timeout_s:g} s of the "
                         "last part; none came. Retry.", {"Connection": "close"})


class RequestGuard:
    """ASGI middleware (module docstring).

    Parameters
    ----------
    app : ASGI app
        What it guards.
    metrics : Metrics
        Counts every request by route and status.
    max_body_bytes : int
        Largest body accepted.
    body_timeout_s : float
        Longest wait for the next part of a body.
    """

    def __init__(self, app: Any, metrics: Metrics, *, max_body_bytes: int,
                 body_timeout_s: float) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid, declared = None, None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id" and _PRINTABLE.fullmatch(value):
                rid = value.decode("ascii")
            elif name == b"content-length":
                declared = value
        rid = rid or new_id()
        scope.setdefault("state", {})["request_id"] = rid
        status, started = 500, False

        async def send_with_id(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id",
                                                                     rid.encode())]
            await send(message)

        try:
            if declared is not None and _too_big(declared, self.max_body_bytes):
                raise BodyTooLarge(self.max_body_bytes,
                                   f"Content-Length {declared.decode('latin-1')[:20]}")
            await self.app(scope, self._limited(receive), send_with_id)
        except (BodyTooLarge, BodyTooSlow) as exc:  # raised before a route could answer
            if not started:
                await _reply(send_with_id, exc.status_code, str(exc.detail), rid, close=True)
        except ClientDisconnect:
            status = CLIENT_CLOSED
            log.info("request %s: the client closed the connection before the body ended",
                     rid)
        except Exception:
            log.exception("internal error in %s %s (request id %s)", scope.get("method"),
                          scope.get("path"), rid)
            if started:
                raise
            await _reply(send_with_id, 500, "internal error; the request id names it in the "
                         "service log", rid, close=False)
        finally:
            route = scope.get("route")
            self.metrics.request(getattr(route, "path", "unmatched"), status)

    def _limited(self, receive: Any) -> Any:
        """``receive`` that refuses a body over the limit or one that stops arriving."""
        received, done = 0, False
        limit, timeout = self.max_body_bytes, self.body_timeout_s

        async def receive_body() -> dict:
            nonlocal received, done
            if done:
                return await receive()
            try:
                async with asyncio.timeout(timeout):  # a timer handle, no task (wait_for's)
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, f"more than {limit:,}")
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return receive_body


def _too_big(declared: bytes, limit: int) -> bool:
    try:
        return int(declared) > limit
    except ValueError:  # uvicorn refuses a malformed Content-Length before we see it
        return False


async def _reply(send: Any, status: int, message: str, rid: str, *, close: bool) -> None:
    from pydantic_core import to_json

    body = to_json({"error": message, "field": None, "request_id": rid})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BodyTooLarge", "BodyTooSlow", "RequestGuard"]
