"""What a request knows once it is authenticated, and the dependencies that build it.

Routers (``gateway/files.py`` included) declare::

    @router.get("/files")
    async def list_files(rc: RequestContext = Depends(current_principal)) -> ...

and receive the caller's principal, tier, request id and the gateway's services.
The rate-limit headers for the response are set by the dependency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Request

from tenantkit.auth import KeyManager, Principal
from tenantkit.config import Settings, Tier
from tenantkit.db import Database
from tenantkit.errors import AuthenticationError, PermissionDenied, ScopeNotAllowed
from tenantkit.workers import Executor, TenantApp, TenantContext

if TYPE_CHECKING:
    from tenantkit.gateway.admission_queue import AdmissionQueue
    from tenantkit.limits import Admission
    from tenantkit.metering import PriceTable, UsageMeter
    from tenantkit.tenants import TenantService

__all__ = [
    "CurrentPrincipal",
    "RequestContext",
    "Services",
    "authenticate",
    "authenticate_request",
    "current_principal",
    "scope_allows",
    "services_of",
]

T = TypeVar("T")


@dataclass(eq=False)
class Services:
    """Everything the gateway's routes use, built once per process.

    ``prices`` is the price table usage reports are costed with
    (``Settings.prices``; ``None``: the defaults).
    """

    app: TenantApp
    settings: Settings
    db: Database
    keys: KeyManager
    tenants: TenantService
    admission: Admission
    meter: UsageMeter
    executor: Executor
    admissions: AdmissionQueue
    clock: Callable[[], float] = time.time
    owns_db: bool = False
    inline_db: bool = True
    storage_factory: Callable[[str, Tier], Any] | None = None
    prices: PriceTable | None = None
    _storage: dict[tuple[str, str], Any] = field(default_factory=dict)

    async def db_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a short records-database call: inline for SQLite (a few microseconds,
        cheaper than a thread hop), in a worker thread for network databases."""
        if self.inline_db:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def slow_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a call that may do file or network work (tenant creation and
        deletion remove files) in a worker thread, whatever the database."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def usage_report(
        self, tenant_id: str, *, period: str, date: str | None
    ) -> dict[str, Any]:
        """A tenant's usage report, including what the meter still buffers.

        The flush and the report run in a worker thread: a flush may write
        thousands of events and must not stall the event loop.
        """
        from tenantkit.metering import usage_report

        def build() -> dict[str, Any]:
            self.meter.flush()
            return usage_report(
                self.db, tenant_id, period=period, date=date, prices=self.prices, clock=self.clock
            )

        return await self.slow_call(build)

    def storage_for(self, tenant_id: str, tier: Tier) -> Any:
        """The tenant's storage (cached per tenant and tier), or ``None``."""
        if self.storage_factory is None:
            return None
        key = (tenant_id, tier.name)
        storage = self._storage.get(key)
        if storage is None:
            if len(self._storage) > 10_000:
                self._storage.clear()
            storage = self._storage[key] = self.storage_factory(tenant_id, tier)
        return storage

    def tier_named(self, name: str) -> Tier:
        tier = self.app.tiers.get(name)
        if tier is None:
            raise PermissionDenied(f"tier {name!r} is not offered by this app")
        return tier


@dataclass(eq=False)
class RequestContext:
    """An authenticated request.

    Attributes:
        principal: The tenant and key the request speaks for.
        tier: The tenant's tier now (an upgrade applies on the next request).
        request_id: The id sent back in ``X-Request-ID``.
        event_id: The usage event's idempotency key.
        services: The gateway's services.
    """

    principal: Principal
    tier: Tier
    request_id: str
    event_id: str
    services: Services

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant.id

    def context(self) -> TenantContext:
        """The :class:`TenantContext` a tenant function receives."""
        return TenantContext(
            tenant_id=self.principal.tenant.id,
            tier=self.tier.name,
            request_id=self.request_id,
            key_id=self.principal.key.id,
            scopes=self.principal.key.scopes,
            storage=self.services.storage_for(self.principal.tenant.id, self.tier),
        )

    def require_scope(self, scope: str) -> None:
        """Raise ``ScopeNotAllowed`` unless the key's scopes cover ``scope``."""
        if not scope_allows(self.principal.key.scopes, scope):
            raise ScopeNotAllowed(f"this API key's scopes do not include {scope!r}")


def scope_allows(scopes: tuple[str, ...], needed: str) -> bool:
    """Whether ``scopes`` cover ``needed``: no scopes means unrestricted; ``*``
    and ``prefix:*`` are wildcards."""
    if not scopes:
        return True
    for scope in scopes:
        if scope == needed or scope == "*":
            return True
        if scope.endswith("*") and needed.startswith(scope[:-1]):
            return True
    return False


def services_of(request: Request) -> Services:
    services: Services = request.app.state.tenantkit
    return services


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: Request) -> RequestContext:
    """Verify the request's API key (cached) and resolve the tenant's tier.

    Raises:
        AuthenticationError: 401, with ``WWW-Authenticate: Bearer``.
        TenantSuspended: 403.
    """
    services = services_of(request)
    state = request.scope["state"]
    token = bearer_token(request)
    try:
        if token is None:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        principal = services.keys.verify(token)
    except AuthenticationError:
        state["response_headers"] = {"WWW-Authenticate": 'Bearer realm="tenantkit"'}
        raise
    tier = services.tier_named(principal.tenant.tier)
    return RequestContext(
        principal=principal,
        tier=tier,
        request_id=state["request_id"],
        event_id=state["event_id"],
        services=services,
    )


async def set_rate_limit_headers(request: Request, rc: RequestContext) -> None:
    """Put the tenant's current rate-limit headers on the response (no consumption)."""
    from tenantkit.limits import rate_limit_headers

    services = rc.services
    state = await services.db_call(services.admission.peek, rc.tenant_id, rc.tier)
    headers = request.scope["state"].setdefault("response_headers", {})
    headers.update(rate_limit_headers(state))


async def authenticate_request(request: Request) -> RequestContext:
    """:func:`authenticate` from the event loop: inline for SQLite, in a worker
    thread for network databases."""
    if services_of(request).inline_db:
        return authenticate(request)
    return await anyio.to_thread.run_sync(authenticate, request)


async def current_principal(request: Request) -> RequestContext:
    """FastAPI dependency: the authenticated caller, with rate-limit headers set."""
    rc = await authenticate_request(request)
    await set_rate_limit_headers(request, rc)
    return rc


CurrentPrincipal = Annotated[RequestContext, Depends(current_principal)]
"""Annotate a route parameter with this to receive the authenticated caller."""
