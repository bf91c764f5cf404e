"""Python clients tenants use to call a tenantkit API (sync and async, on httpx).

::

    from tenantkit import Client

    with Client("https://acme--saas.modal.run", api_key) as client:
        client.health()
        client.process("analyze", {"items": [1, 2, 3]})     # the seed's /process
        client.call("analyze", items=[1, 2, 3])             # /functions/analyze
        client.rate_limit()

The key travels only over ``https://``, or plain ``http://`` to this machine
(``localhost``, ``127.x``, ``::1``: ``tenantkit serve``); anything else is
refused with ``ConfigurationError`` unless ``allow_insecure=True``.

Errors come back as tenantkit's own exception classes, chosen from the
problem details the server sends: ``AuthenticationError`` (401),
``TierNotAllowed`` (403), ``FunctionNotFound`` (404), ``RateLimitExceeded``
with ``retry_after`` (429), ``FunctionTimeout`` (504) and so on. Each carries
``request_id`` and ``status_code``. When no answer comes at all (connection
refused, a name that does not resolve, a timeout) the error is
``ServiceUnreachable``, one line naming the URL, with the httpx error as its
``__cause__``. With ``retries=N`` a 429 or 503 is retried
up to N times, waiting as ``Retry-After`` says (never longer than
``max_retry_wait``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx

from tenantkit import errors as _errors
from tenantkit.errors import (
    ConfigurationError,
    LimitExceeded,
    ServiceUnreachable,
    TenantKitError,
)

__all__ = ["AsyncClient", "Client", "check_url", "error_from_response", "unreachable"]

_IN_PROCESS_TRANSPORTS = (httpx.ASGITransport, httpx.WSGITransport, httpx.MockTransport)


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); not a name that
    merely starts with ``127.`` (``127.0.0.1.example.com``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, sending: str = "the API key", allow_insecure: bool = False) -> None:
    """Refuse a URL a key must not be sent to: anything but ``https://``,
    except plain ``http://`` to this machine (``tenantkit serve``). The
    Python clients and the CLI's remote target share this rule.

    Args:
        url: The API's base URL.
        sending: What would be sent, for the message ("the admin key").
        allow_insecure: Accept plain ``http://`` to any host.

    Raises:
        ConfigurationError: naming the rule.

    Example:
        >>> check_url("https://acme--saas.modal.run")
        >>> check_url("http://127.0.0.1:8000")
        >>> check_url("http://api.example.com", allow_insecure=True)
        >>> check_url("http://api.example.com")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tenantkit.errors.ConfigurationError: refusing to send the API key to http://api...
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise ConfigurationError(f"{url!r} is not a URL") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"put no credentials in the URL; {sending} is sent as a header")
    if not host:
        raise ConfigurationError(f"{url!r} is not a URL: give e.g. https://<app>.modal.run")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and (allow_insecure or _is_loopback(host)):
        return
    hint = "" if parts.scheme != "http" else ", or allow_insecure=True"
    raise ConfigurationError(
        f"refusing to send {sending} to {parts.scheme}://{host}: use https:// "
        f"(plain http:// only to this machine{hint})"
    )


_RETRY_STATUSES = frozenset({429, 503})


def _error_classes() -> dict[str, type[TenantKitError]]:
    from tenantkit.workers.function import InvalidArguments

    classes: dict[str, type[TenantKitError]] = {}
    pending: list[type[TenantKitError]] = [TenantKitError]
    while pending:
        cls = pending.pop()
        classes.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    classes[InvalidArguments.code] = InvalidArguments
    classes[_errors.RateLimitExceeded.code] = _errors.RateLimitExceeded
    # the generic HTTP codes the gateway uses for framework errors
    classes.setdefault("bad-request", _errors.ValidationError)
    return classes


_BY_STATUS: dict[int, type[TenantKitError]] = {
    400: _errors.ValidationError,
    401: _errors.AuthenticationError,
    403: _errors.PermissionDenied,
    404: _errors.NotFound,
    409: _errors.Conflict,
    413: _errors.PayloadTooLarge,
    422: _errors.ValidationError,
    429: _errors.RateLimitExceeded,
    503: _errors.DatabaseUnavailable,
    504: _errors.FunctionTimeout,
}

_CLASSES: dict[str, type[TenantKitError]] | None = None


def _retry_after(response: httpx.Response, body: Mapping[str, Any]) -> float | None:
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    value = body.get("retry_after")
    return float(value) if isinstance(value, int | float) else None


def error_from_response(response: httpx.Response) -> TenantKitError:
    """The tenantkit exception a non-2xx response stands for.

    The problem's ``type`` picks the class (falling back on the status);
    ``request_id``, ``status_code`` and the whole ``problem`` are attached.
    """
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _error_classes()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("type", "")).rsplit("/", 1)[-1]
    cls = _CLASSES.get(code) or _BY_STATUS.get(response.status_code, TenantKitError)
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    error: TenantKitError
    if issubclass(cls, LimitExceeded):
        limit = body.get("limit")
        error = cls(
            str(detail),
            retry_after=_retry_after(response, body),
            limit=limit if isinstance(limit, str) else None,
        )
    elif code == "invalid-arguments":
        from tenantkit.workers.function import InvalidArguments

        errors = body.get("errors")
        error = InvalidArguments(str(detail), errors if isinstance(errors, list) else [])
    else:
        error = cls(str(detail))
    error.request_id = body.get("request_id") or response.headers.get("x-request-id")  # type: ignore[attr-defined]
    error.status_code = response.status_code  # type: ignore[attr-defined]
    error.problem = body  # type: ignore[attr-defined]
    return error


def unreachable(url: str, exc: httpx.TransportError) -> ServiceUnreachable:
    """The one-line error for a request to ``url`` that got no answer.

    Example:
        >>> str(unreachable("http://127.0.0.1:9/health", httpx.ConnectError("refused")))
        'cannot reach http://127.0.0.1:9/health: connection failed (refused)'
    """
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError | httpx.ProxyError):
        what = "connection failed"
    else:
        what = "the connection broke"
    detail = " ".join(str(exc).split())
    return ServiceUnreachable(
        f"cannot reach {url}: {what}" + (f" ({detail})" if detail else ""), url=url
    )


class _Base:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        retries: int,
        max_retry_wait: float,
        allow_insecure: bool,
        transport: object,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be zero or more")
        if not isinstance(transport, _IN_PROCESS_TRANSPORTS):  # those never open a socket
            check_url(url, allow_insecure=allow_insecure)
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.retries = retries
        self.max_retry_wait = max_retry_wait

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _wait(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying ``response``, or ``None`` to give up."""
        if response.status_code not in _RETRY_STATUSES or attempt >= self.retries:
            return None
        header = response.headers.get("retry-after")
        try:
            wait = float(header) if header is not None else min(2.0**attempt, 30.0)
        except ValueError:
            wait = 1.0
        if wait > self.max_retry_wait:
            return None
        return max(0.0, wait)

    @staticmethod
    def _result(response: httpx.Response) -> Any:
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            return response.json()
        raise error_from_response(response)


class Client(_Base):
    """Synchronous client.

    Args:
        url: The API's base URL.
        api_key: The tenant's API key.
        timeout: Seconds per HTTP request.
        retries: Retries of a 429 or 503 answer, honouring ``Retry-After``.
        max_retry_wait: Longest ``Retry-After`` worth waiting for.
        transport: An httpx transport (tests pass ``httpx.ASGITransport`` or a mock;
            in-process transports skip the URL rule).
        allow_insecure: Send the key over plain ``http://`` to any host (by
            default only ``https://``, or ``http://`` to this machine).

    Raises:
        ConfigurationError: ``url`` breaks the rule above.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 0,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        allow_insecure: bool = False,
    ) -> None:
        super().__init__(
            url,
            api_key,
            retries=retries,
            max_retry_wait=max_retry_wait,
            allow_insecure=allow_insecure,
            transport=transport,
        )
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request (with retries) and return its JSON, or raise its error."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise unreachable(f"{self.url}{path}", exc) from exc
            wait = self._wait(response, attempt)
            if wait is None:
                return self._result(response)
            attempt += 1
            time.sleep(wait)

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        result: dict[str, Any] = self.request("GET", "/health")
        return result

    def tenant(self) -> dict[str, Any]:
        """``GET /tenant``: the caller's tenant record."""
        result: dict[str, Any] = self.request("GET", "/tenant")
        return result

    def usage(self, period: str = "day", date: str | None = None) -> dict[str, Any]:
        """``GET /usage``."""
        params = {"period": period} | ({"date": date} if date else {})
        result: dict[str, Any] = self.request("GET", "/usage", params=params)
        return result

    def rate_limit(self) -> dict[str, Any]:
        """``GET /rate-limit``."""
        result: dict[str, Any] = self.request("GET", "/rate-limit")
        return result

    def process(self, task_type: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``POST /process`` (the seed's form); the function's value is under ``"result"``."""
        body = {"task_type": task_type, "data": dict(data or {})}
        result: dict[str, Any] = self.request("POST", "/process", json=body)
        return result

    def batch(self, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /batch``: ``tasks`` are ``{"task_type", "data"}`` mappings."""
        result: dict[str, Any] = self.request(
            "POST", "/batch", json={"tasks": [dict(t) for t in tasks]}
        )
        return result

    def call(self, function: str, /, **arguments: Any) -> Any:
        """``POST /functions/{function}`` with ``arguments`` as the body; returns its value."""
        return self.request("POST", f"/functions/{function}", json=arguments)

    def post(self, path: str, body: Any = None) -> Any:
        """``POST`` to any route, e.g. a function's own ``path`` like ``/inference``."""
        return self.request("POST", path, json=body)


class AsyncClient(_Base):
    """Asynchronous client; same methods as :class:`Client`, awaited."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 0,
        max_retry_wait: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_insecure: bool = False,
    ) -> None:
        super().__init__(
            url,
            api_key,
            retries=retries,
            max_retry_wait=max_retry_wait,
            allow_insecure=allow_insecure,
            transport=transport,
        )
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request (with retries) and return its JSON, or raise its error."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise unreachable(f"{self.url}{path}", exc) from exc
            wait = self._wait(response, attempt)
            if wait is None:
                return self._result(response)
            attempt += 1
            await asyncio.sleep(wait)

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/health")
        return result

    async def tenant(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/tenant")
        return result

    async def usage(self, period: str = "day", date: str | None = None) -> dict[str, Any]:
        params = {"period": period} | ({"date": date} if date else {})
        result: dict[str, Any] = await self.request("GET", "/usage", params=params)
        return result

    async def rate_limit(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/rate-limit")
        return result

    async def process(
        self, task_type: str, data: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"task_type": task_type, "data": dict(data or {})}
        result: dict[str, Any] = await self.request("POST", "/process", json=body)
        return result

    async def batch(self, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/batch", json={"tasks": [dict(t) for t in tasks]}
        )
        return result

    async def call(self, function: str, /, **arguments: Any) -> Any:
        return await self.request("POST", f"/functions/{function}", json=arguments)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json=body)
