"""RFC 9457 problem details: every error the gateway answers with.

A problem body names its type, title, status and a ``detail`` written for
the caller, plus the ``request_id`` to quote when asking for help::

    {"type": "https://tenantkit.dev/problems/rate-limited", "title": "Too many requests",
     "status": 429, "detail": "...", "instance": "/process", "request_id": "..."}

A tenant function's own exception never reaches the client: it becomes a 500
``function-error`` problem that only carries the request id. Database
problems (500 and 503 alike) answer with a fixed detail; the real message,
which may name a server path, is logged with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tenantkit.errors import DatabaseError, LimitExceeded, TenantKitError
from tenantkit.gateway.encoding import encode_json
from tenantkit.limits.headers import retry_after_seconds

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "install_problem_handlers",
    "problem_body",
    "problem_response",
    "public_detail",
]

logger = logging.getLogger("tenantkit.gateway")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://tenantkit.dev/problems/"

_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("service-unavailable", "Service unavailable"),
    504: ("function-timeout", "Function timed out"),
}


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: str | None,
    instance: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON members of one problem."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body["request_id"] = request_id
    if extras:
        for key, value in extras.items():
            body.setdefault(key, value)
    return body


DATABASE_DETAIL = "the records database is unavailable; retry later"
INTERNAL_DETAIL = "the request failed; quote the request id when reporting it"


def public_detail(exc: TenantKitError) -> str:
    """What a client may read of ``exc``: its message for errors meant for the
    caller, a fixed sentence for internal ones (database, 500s)."""
    if isinstance(exc, DatabaseError):
        return DATABASE_DETAIL if exc.status == 503 else INTERNAL_DETAIL
    if exc.status >= 500 and exc.status not in (503, 504) and not isinstance(exc, LimitExceeded):
        return INTERNAL_DETAIL
    return str(exc) or exc.title


def problem_response(
    exc: TenantKitError,
    request_id: str | None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A tenantkit error as a problem+json response (with ``Retry-After`` on 429)."""
    status = exc.status
    body = problem_body(
        status=status,
        code=exc.code,
        title=exc.title,
        detail=public_detail(exc),
        request_id=request_id,
        instance=instance,
        extras=exc.problem_extras(),
    )
    out = dict(headers or {})
    if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
        out["Retry-After"] = str(retry_after_seconds(exc.retry_after))
    return Response(
        encode_json(body), status_code=status, headers=out, media_type=PROBLEM_MEDIA_TYPE
    )


def http_problem(
    status: int, detail: str, request_id: str | None, *, instance: str | None = None
) -> Response:
    """A problem for a plain HTTP status (routing errors, framework errors)."""
    code, title = _HTTP_TITLES.get(status, ("error", "Error"))
    body = problem_body(
        status=status,
        code=code,
        title=title,
        detail=detail,
        request_id=request_id,
        instance=instance,
    )
    return Response(encode_json(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def request_id_of(request: Request) -> str | None:
    rid: str | None = request.scope.get("state", {}).get("request_id")
    return rid


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, including the framework's own, as problem+json."""

    async def on_tenantkit_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TenantKitError)
        if isinstance(exc, DatabaseError) or (exc.status >= 500 and exc.status not in (503, 504)):
            logger.error(
                "request %s failed: %s: %s", request_id_of(request), type(exc).__name__, exc
            )
        return problem_response(exc, request_id_of(request), instance=request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = (
            exc.detail
            if isinstance(exc.detail, str)
            else _HTTP_TITLES.get(exc.status_code, ("", "Error"))[1]
        )
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        response = http_problem(
            exc.status_code, detail, request_id_of(request), instance=request.url.path
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        body = problem_body(
            status=422,
            code="invalid-input",
            title="Invalid input",
            detail=f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}",
            request_id=request_id_of(request),
            instance=request.url.path,
            extras={"errors": errors},
        )
        return Response(encode_json(body), status_code=422, media_type=PROBLEM_MEDIA_TYPE)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        logger.exception("unexpected error in request %s", rid, exc_info=exc)
        response = http_problem(
            500,
            INTERNAL_DETAIL,
            rid,
            instance=request.url.path,
        )
        if rid is not None:
            response.headers["X-Request-ID"] = rid
        return response

    app.add_exception_handler(TenantKitError, on_tenantkit_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
