"""What the tenant, key and usage commands talk to.

By default a :class:`LocalTarget`: the records database in this folder (the
one ``tenantkit serve`` uses here). With ``--url`` or ``TENANTKIT_URL`` (and
``TENANTKIT_ADMIN_KEY``), a :class:`RemoteTarget`: a deployed gateway's admin
API over HTTPS. Both have the same methods, so commands do not care which
they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar
from urllib.parse import quote

import click

from tenantkit.auth.keys import IssuedKey, KeyManager
from tenantkit.config import Settings, get_settings, validate_tenant_id
from tenantkit.db.base import ApiKeyRecord, Database, Tenant
from tenantkit.errors import ConfigurationError, TenantKitError
from tenantkit.tenants import TenantService

if TYPE_CHECKING:
    import httpx

    from tenantkit.metering import PriceTable

__all__ = [
    "LocalTarget",
    "RemoteTarget",
    "Target",
    "key_from_public",
    "open_target",
    "target_for",
    "tenant_from_public",
    "url_option",
]

P = ParamSpec("P")
R = TypeVar("R")


class Target(Protocol):
    """Tenant and key administration, local or remote."""

    def create_tenant(
        self, tenant_id: str, name: str, tier: str, email: str | None = None
    ) -> tuple[Tenant, IssuedKey]: ...

    def get_tenant(self, tenant_id: str) -> Tenant: ...

    def list_tenants(
        self, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[Tenant], str | None]: ...

    def change_tier(self, tenant_id: str, tier: str) -> Tenant: ...

    def suspend(self, tenant_id: str, reason: str | None = None) -> Tenant: ...

    def resume(self, tenant_id: str) -> Tenant: ...

    def delete_tenant(self, tenant_id: str) -> None: ...

    def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]: ...

    def create_key(
        self,
        tenant_id: str,
        *,
        label: str = "default",
        scopes: Sequence[str] = (),
        expires_in: float | None = None,
    ) -> IssuedKey: ...

    def revoke_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord: ...

    def rotate_key(
        self, tenant_id: str, key_id: str | None = None, *, grace: float = 0
    ) -> IssuedKey: ...

    def usage(
        self, tenant_id: str, *, period: str = "day", date: str | None = None
    ) -> dict[str, Any]: ...

    def deleted_usage(
        self, tenant_id: str, *, period: str = "day", date: str | None = None
    ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def tenant_from_public(data: Mapping[str, Any]) -> Tenant:
    """A :class:`Tenant` from its ``public()`` JSON form."""
    try:
        return Tenant(
            id=data["tenant_id"],
            name=data["name"],
            tier=data["tier"],
            status=data["status"],
            created_at=float(data["created_at"]),
            updated_at=float(data["updated_at"]),
            email=data.get("email"),
            suspended_reason=data.get("suspended_reason"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TenantKitError("the server sent a tenant record tenantkit cannot read") from exc


def key_from_public(data: Mapping[str, Any]) -> ApiKeyRecord:
    """An :class:`ApiKeyRecord` from its ``public()`` JSON form."""

    def time_or_none(name: str) -> float | None:
        value = data.get(name)
        return None if value is None else float(value)

    try:
        return ApiKeyRecord(
            id=data["key_id"],
            tenant_id=data["tenant_id"],
            label=data["label"],
            hint=data["hint"],
            created_at=float(data["created_at"]),
            scopes=tuple(data.get("scopes") or ()),
            expires_at=time_or_none("expires_at"),
            revoked_at=time_or_none("revoked_at"),
            last_used_at=time_or_none("last_used_at"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TenantKitError("the server sent a key record tenantkit cannot read") from exc


class LocalTarget:
    """The local records database, through :class:`TenantService` and :class:`KeyManager`.

    Args:
        settings: Where the database and signing keys are.
        db: An open database to use instead of the one ``settings`` name.
        actor: Name written to the audit trail.
    """

    def __init__(
        self, settings: Settings, *, db: Database | None = None, actor: str = "cli"
    ) -> None:
        if db is None:
            from tenantkit.db import open_database

            db = open_database(settings.resolved_database_url())
            self._owns_db = True
        else:
            self._owns_db = False
        self.settings = settings
        self.db = db
        self.actor = actor
        self.keys = KeyManager(db, settings)
        self.tenants = TenantService(db, self.keys)
        self._prices: PriceTable | None = None

    def create_tenant(
        self, tenant_id: str, name: str, tier: str, email: str | None = None
    ) -> tuple[Tenant, IssuedKey]:
        return self.tenants.create(tenant_id, name, tier, email, actor=self.actor)

    def get_tenant(self, tenant_id: str) -> Tenant:
        return self.tenants.get(tenant_id)

    def list_tenants(
        self, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[Tenant], str | None]:
        page = self.tenants.list(limit=limit, after=after)
        return page, (page[-1].id if len(page) == limit else None)

    def change_tier(self, tenant_id: str, tier: str) -> Tenant:
        return self.tenants.change_tier(tenant_id, tier, actor=self.actor)

    def suspend(self, tenant_id: str, reason: str | None = None) -> Tenant:
        return self.tenants.suspend(tenant_id, reason, actor=self.actor)

    def resume(self, tenant_id: str) -> Tenant:
        return self.tenants.resume(tenant_id, actor=self.actor)

    def delete_tenant(self, tenant_id: str) -> None:
        self.tenants.delete(tenant_id, actor=self.actor)

    def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        return self.keys.list_keys(tenant_id)

    def create_key(
        self,
        tenant_id: str,
        *,
        label: str = "default",
        scopes: Sequence[str] = (),
        expires_in: float | None = None,
    ) -> IssuedKey:
        return self.keys.mint(
            tenant_id, label=label, scopes=scopes, expires_in=expires_in, actor=self.actor
        )

    def revoke_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord:
        return self.keys.revoke(tenant_id, key_id, actor=self.actor)

    def rotate_key(
        self, tenant_id: str, key_id: str | None = None, *, grace: float = 0
    ) -> IssuedKey:
        return self.keys.rotate(tenant_id, key_id, grace=grace, actor=self.actor)

    def usage(
        self, tenant_id: str, *, period: str = "day", date: str | None = None
    ) -> dict[str, Any]:
        from tenantkit.metering import usage_report

        self.tenants.get(tenant_id)
        return usage_report(self.db, tenant_id, period=period, date=date, prices=self.prices())

    def prices(self) -> PriceTable:
        """The settings' price table, read once per target (a bad one fails only usage)."""
        from tenantkit.metering import PriceTable

        if self._prices is None:
            self._prices = PriceTable.from_mapping(self.settings.prices)
        return self._prices

    def deleted_usage(
        self, tenant_id: str, *, period: str = "day", date: str | None = None
    ) -> list[dict[str, Any]]:
        from tenantkit.metering.report import archived_usage_reports

        return archived_usage_reports(
            self.db, tenant_id, period=period, date=date, prices=self.prices()
        )

    def close(self) -> None:
        self.keys.close()
        if self._owns_db:
            self.db.close()


def _tid(tenant_id: str) -> str:
    return validate_tenant_id(tenant_id)


def _check_url(url: str) -> None:
    """The clients' rule (:func:`tenantkit.client.check_url`) for the admin key."""
    from tenantkit.client import check_url

    check_url(url, sending="the admin key")


class RemoteTarget:
    """A deployed gateway's admin API (``/admin/...``), authenticated with the admin key.

    The URL must be ``https://`` (plain ``http://`` is accepted for this
    machine only), so the admin key never crosses a network in clear.

    Args:
        url: The gateway's base URL.
        admin_key: ``TENANTKIT_ADMIN_KEY`` of that deployment.
        timeout: Seconds per request.
        transport: An httpx transport (tests pass an in-process app).
    """

    def __init__(
        self,
        url: str,
        admin_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        if transport is None:
            _check_url(self.url)
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {admin_key}", "User-Agent": "tenantkit-cli"},
            timeout=timeout,
            transport=transport,
        )

    @contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        import httpx

        from tenantkit.client import unreachable

        try:
            yield
        except httpx.TransportError as exc:
            raise unreachable(f"{self.url}{path}", exc) from exc
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"cannot reach {self.url}: {exc}") from exc

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        with self._errors(path):
            response = self._client.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise TenantKitError(f"{self.url} answered with something other than JSON") from exc

    def _error(self, response: httpx.Response) -> TenantKitError:
        from tenantkit.client import error_from_response

        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            return TenantKitError(f"{self.url} answered HTTP {response.status_code}")
        return error_from_response(response)

    def create_tenant(
        self, tenant_id: str, name: str, tier: str, email: str | None = None
    ) -> tuple[Tenant, IssuedKey]:
        body: dict[str, Any] = {"tenant_id": tenant_id, "name": name, "tier": tier}
        if email is not None:
            body["email"] = email
        data = self._call("POST", "/admin/tenants", json=body)
        issued = IssuedKey(data["api_key"], key_from_public(data["key"]))
        return tenant_from_public(data["tenant"]), issued

    def get_tenant(self, tenant_id: str) -> Tenant:
        return tenant_from_public(self._call("GET", f"/admin/tenants/{_tid(tenant_id)}")["tenant"])

    def list_tenants(
        self, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[Tenant], str | None]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        data = self._call("GET", "/admin/tenants", params=params)
        return [tenant_from_public(t) for t in data["tenants"]], data.get("next_after")

    def _patch(self, tenant_id: str, body: dict[str, Any]) -> Tenant:
        data = self._call("PATCH", f"/admin/tenants/{_tid(tenant_id)}", json=body)
        return tenant_from_public(data["tenant"])

    def change_tier(self, tenant_id: str, tier: str) -> Tenant:
        return self._patch(tenant_id, {"tier": tier})

    def suspend(self, tenant_id: str, reason: str | None = None) -> Tenant:
        body: dict[str, Any] = {"status": "suspended"}
        if reason is not None:
            body["reason"] = reason
        return self._patch(tenant_id, body)

    def resume(self, tenant_id: str) -> Tenant:
        return self._patch(tenant_id, {"status": "active"})

    def delete_tenant(self, tenant_id: str) -> None:
        self._call("DELETE", f"/admin/tenants/{_tid(tenant_id)}")

    def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        data = self._call("GET", f"/admin/tenants/{_tid(tenant_id)}/keys")
        return [key_from_public(k) for k in data["keys"]]

    def create_key(
        self,
        tenant_id: str,
        *,
        label: str = "default",
        scopes: Sequence[str] = (),
        expires_in: float | None = None,
    ) -> IssuedKey:
        body: dict[str, Any] = {"label": label, "scopes": list(scopes)}
        if expires_in is not None:
            body["expires_in"] = expires_in
        data = self._call("POST", f"/admin/tenants/{_tid(tenant_id)}/keys", json=body)
        return IssuedKey(data["api_key"], key_from_public(data["key"]))

    def revoke_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord:
        data = self._call(
            "POST", f"/admin/tenants/{_tid(tenant_id)}/keys/{quote(key_id, safe='')}/revoke"
        )
        return key_from_public(data["key"])

    def rotate_key(
        self, tenant_id: str, key_id: str | None = None, *, grace: float = 0
    ) -> IssuedKey:
        body: dict[str, Any] = {"grace": grace}
        if key_id is not None:
            body["key_id"] = key_id
        data = self._call("POST", f"/admin/tenants/{_tid(tenant_id)}/keys/rotate", json=body)
        return IssuedKey(data["api_key"], key_from_public(data["key"]))

    def usage(
        self, tenant_id: str, *, period: str = "day", date: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"period": period}
        if date is not None:
            params["date"] = date
        data: dict[str, Any] = self._call(
            "GET", f"/admin/tenants/{_tid(tenant_id)}/usage", params=params
        )
        return data

    def deleted_usage(
        self, tenant_id: str, *, period: str = "day", date: str | None = None
    ) -> list[dict[str, Any]]:
        raise ConfigurationError(
            "usage show --deleted reads the records database directly: run it where "
            "TENANTKIT_DATABASE_URL names the deployment's database, without --url"
        )

    def close(self) -> None:
        self._client.close()


def open_target(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    local: Callable[[Settings], Target] | None = None,
) -> Target:
    """The target a command should use: remote when a URL is given or configured.

    Args:
        url: ``--url``; falls back to ``TENANTKIT_URL``.
        settings: Settings to use (read from the environment when omitted).
        local: Factory for the local target (tests substitute one).

    Raises:
        ConfigurationError: a URL without ``TENANTKIT_ADMIN_KEY``.
    """
    settings = settings or get_settings()
    url = url or settings.url
    if url:
        admin_key = settings.admin_key.get_secret_value() if settings.admin_key else ""
        if not admin_key:
            raise ConfigurationError(
                f"managing tenants at {url} needs the deployment's admin key: "
                "set TENANTKIT_ADMIN_KEY"
            )
        return RemoteTarget(url, admin_key)
    return (local or LocalTarget)(settings)


def url_option(fn: Callable[P, R]) -> Callable[P, R]:
    """Add ``--url`` (manage a deployed gateway instead of the local database)."""
    return click.option(
        "--url",
        default=None,
        metavar="URL",
        help="A deployed gateway to manage (default: TENANTKIT_URL, else the local database).",
    )(fn)


@contextmanager
def target_for(url: str | None) -> Iterator[Target]:
    """Open the target for ``--url`` (or the local database) and close it afterwards."""
    target = open_target(url)
    try:
        yield target
    finally:
        target.close()
