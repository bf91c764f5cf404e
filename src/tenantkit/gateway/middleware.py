"""The gateway's one middleware, in plain ASGI (no per-request task or copy).

For every HTTP request it

* assigns the request id: the client's ``X-Request-ID`` when well formed,
  else a fresh one, and sends it back on every response;
* enforces the body size limit before anything parses the body: a
  ``Content-Length`` over the limit is answered 413 at once, and a body sent
  without one (chunked) is counted as it streams, the request failing with 413
  as soon as it passes the limit;
* adds the headers a route left in ``scope["state"]["response_headers"]``
  (the rate-limit headers), so error responses carry them too.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantkit.errors import PayloadTooLarge
from tenantkit.gateway.problems import PROBLEM_MEDIA_TYPE, problem_body

__all__ = ["REQUEST_ID_PATTERN", "GatewayMiddleware", "new_request_id"]

REQUEST_ID_PATTERN = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
"""A client's request id is kept when it is 8-128 safe characters."""


_PREFIX = ""
_COUNTER = itertools.count()


def _reseed() -> None:
    """A new random prefix (at import and in every forked child)."""
    global _PREFIX, _COUNTER
    _PREFIX = os.urandom(8).hex()
    _COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A fresh request id: 32 hex characters, unique across processes and restarts.

    A random per-process prefix and a counter: no system call per request.
    Request ids are not secrets.
    """
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def _add_response_headers(
    message: Message, rid_header: tuple[bytes, bytes], state: dict[str, Any]
) -> None:
    """Give an ``http.response.start`` message the ``X-Request-ID`` header and the
    headers routes left in ``state["response_headers"]`` (a header the response
    already has wins)."""
    headers = list(message.get("headers", ()))
    headers.append(rid_header)
    extra: dict[str, str] | None = state.get("response_headers")
    if extra:
        present = {name.lower() for name, _ in headers}
        for key, value in extra.items():
            name = key.lower().encode("latin-1")
            if name not in present:
                headers.append((name, value.encode("latin-1")))
    message["headers"] = headers


class GatewayMiddleware:
    """Request ids, the body size limit and route-supplied headers.

    Args:
        app: The wrapped ASGI app.
        max_body_bytes: Largest request body accepted.
        streamed_uploads: Path prefixes whose ``PUT`` bodies are exempt: they
            are streamed to storage, which enforces the tenant's storage quota
            chunk by chunk (``/files/``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        streamed_uploads: tuple[str, ...] = ("/files/",),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.streamed_uploads = streamed_uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                client_id = value
            elif name == b"content-length":
                length = value
        if client_id is not None and REQUEST_ID_PATTERN.fullmatch(client_id):
            request_id = client_id.decode("ascii")
            # A client may reuse its ids; usage events need one of their own.
            event_id = f"{request_id}~{new_request_id()}"
        else:
            request_id = event_id = new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["event_id"] = event_id
        rid_header = (b"x-request-id", request_id.encode("ascii"))
        if scope["method"] == "PUT" and scope["path"].startswith(self.streamed_uploads):
            await self.app(scope, receive, self._with_request_id(send, rid_header, state))
            return
        limit = self.max_body_bytes

        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
                await self._too_large(scope, send, rid_header, declared)
                return

        seen = 0
        too_large = False

        async def counted_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
            return message

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if too_large:
                    started = True
                    await self._too_large(scope, send, rid_header, seen)
                    return
                started = True
                _add_response_headers(message, rid_header, state)
            elif too_large:
                return  # the replaced response's body
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except PayloadTooLarge:
            if not started:
                await self._too_large(scope, send, rid_header, seen)

    @staticmethod
    def _with_request_id(
        send: Send, rid_header: tuple[bytes, bytes], state: dict[str, Any]
    ) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_response_headers(message, rid_header, state)
            await send(message)

        return wrapped

    async def _too_large(
        self, scope: Scope, send: Send, rid_header: tuple[bytes, bytes], size: int
    ) -> None:
        state = scope.get("state", {})
        body = to_json(
            problem_body(
                status=413,
                code="payload-too-large",
                title="Payload too large",
                detail=f"request body is over the {self.max_body_bytes}-byte limit",
                request_id=state.get("request_id"),
                instance=scope.get("path"),
                extras={"max_body_bytes": self.max_body_bytes},
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    rid_header,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
