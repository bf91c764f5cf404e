"""The admin API: tenant and key administration over HTTP.

Every route needs ``Authorization: Bearer <TENANTKIT_ADMIN_KEY>`` (compared in
constant time); with no admin key configured, every route answers 401 saying
so. Onboarding flows and the CLI's ``--url`` mode call these routes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from tenantkit.auth import verify_admin_key
from tenantkit.errors import AuthenticationError, ValidationError
from tenantkit.gateway.deps import Services, bearer_token, services_of
from tenantkit.gateway.encoding import encode_json

__all__ = ["router"]


async def admin_services(request: Request) -> Services:
    """Dependency: the services, once the admin key checks out (401 otherwise)."""
    services = services_of(request)
    try:
        verify_admin_key(bearer_token(request), services.settings)
    except AuthenticationError:
        request.scope["state"]["response_headers"] = {
            "WWW-Authenticate": 'Bearer realm="tenantkit-admin"'
        }
        raise
    return services


AdminServices = Annotated[Services, Depends(admin_services)]

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(admin_services)],
    responses={
        status: {"description": "Problem details (RFC 9457)"}
        for status in (401, 404, 409, 422, 503)
    },
)

_SECURITY: dict[str, Any] = {"security": [{"adminKey": []}]}
_ACTOR = "admin-api"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateTenant(_Body):
    tenant_id: str
    name: str
    tier: str
    email: str | None = None


class UpdateTenant(_Body):
    tier: str | None = None
    status: Literal["active", "suspended"] | None = None
    reason: str | None = None
    name: str | None = None


class CreateKey(_Body):
    label: str = "default"
    scopes: list[str] = Field(default_factory=list)
    expires_in: float | None = Field(default=None, gt=0)


class RotateKey(_Body):
    key_id: str | None = None
    grace: float = Field(default=0, ge=0)


def _json(data: Any, status: int = 200) -> Response:
    return Response(encode_json(data), status, media_type="application/json")


@router.post("/tenants", status_code=201, summary="Create a tenant", openapi_extra=_SECURITY)
async def create_tenant(body: CreateTenant, s: AdminServices) -> Response:
    # create may sweep a former tenant's leftover files: off the event loop.
    tenant, issued = await s.slow_call(
        s.tenants.create, body.tenant_id, body.name, body.tier, body.email, actor=_ACTOR
    )
    return _json(
        {"tenant": tenant.public(), "api_key": issued.api_key, "key": issued.record.public()}, 201
    )


@router.get("/tenants", summary="List tenants", openapi_extra=_SECURITY)
async def list_tenants(
    s: AdminServices,
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = None,
) -> Response:
    tenants = await s.db_call(s.tenants.list, limit=limit, after=after)
    next_after = tenants[-1].id if len(tenants) == limit else None
    return _json({"tenants": [t.public() for t in tenants], "next_after": next_after})


@router.get("/tenants/{tenant_id}", summary="Show a tenant", openapi_extra=_SECURITY)
async def get_tenant(tenant_id: str, s: AdminServices) -> Response:
    tenant = await s.db_call(s.tenants.get, tenant_id)
    return _json({"tenant": tenant.public()})


@router.patch(
    "/tenants/{tenant_id}",
    summary="Change a tenant's tier or status",
    openapi_extra=_SECURITY,
)
async def update_tenant(tenant_id: str, body: UpdateTenant, s: AdminServices) -> Response:
    if body.tier is None and body.status is None and body.name is None:
        raise ValidationError("nothing to change: send tier, status or name")
    tenant = await s.db_call(s.tenants.get, tenant_id)
    if body.name is not None and body.name != tenant.name:
        rename = getattr(s.tenants, "rename", None)
        if rename is None:
            raise ValidationError("renaming tenants is not supported")
        tenant = await s.db_call(rename, tenant_id, body.name, actor=_ACTOR)
    if body.tier is not None and body.tier != tenant.tier:
        tenant = await s.db_call(s.tenants.change_tier, tenant_id, body.tier, actor=_ACTOR)
    if body.status == "suspended" and tenant.status != "suspended":
        tenant = await s.db_call(s.tenants.suspend, tenant_id, body.reason, actor=_ACTOR)
    elif body.status == "active" and tenant.status != "active":
        tenant = await s.db_call(s.tenants.resume, tenant_id, actor=_ACTOR)
    s.keys.invalidate(tenant_id)
    return _json({"tenant": tenant.public()})


@router.delete(
    "/tenants/{tenant_id}", status_code=204, summary="Delete a tenant", openapi_extra=_SECURITY
)
async def delete_tenant(tenant_id: str, s: AdminServices) -> Response:
    # delete removes the tenant's files (a folder, or a Volume over the network).
    await s.slow_call(s.tenants.delete, tenant_id, actor=_ACTOR)
    s.keys.invalidate(tenant_id)
    return Response(status_code=204)


@router.get("/tenants/{tenant_id}/keys", summary="List a tenant's keys", openapi_extra=_SECURITY)
async def list_keys(tenant_id: str, s: AdminServices) -> Response:
    keys = await s.db_call(s.keys.list_keys, tenant_id)
    return _json({"keys": [k.public() for k in keys]})


@router.post(
    "/tenants/{tenant_id}/keys", status_code=201, summary="Mint a key", openapi_extra=_SECURITY
)
async def create_key(tenant_id: str, s: AdminServices, body: CreateKey | None = None) -> Response:
    body = body or CreateKey()
    await s.db_call(s.tenants.get, tenant_id)
    issued = await s.db_call(
        s.keys.mint,
        tenant_id,
        label=body.label,
        scopes=tuple(body.scopes),
        expires_in=body.expires_in,
        actor=_ACTOR,
    )
    return _json({"api_key": issued.api_key, "key": issued.record.public()}, 201)


@router.post(
    "/tenants/{tenant_id}/keys/{key_id}/revoke", summary="Revoke a key", openapi_extra=_SECURITY
)
async def revoke_key(tenant_id: str, key_id: str, s: AdminServices) -> Response:
    record = await s.db_call(s.keys.revoke, tenant_id, key_id, actor=_ACTOR)
    return _json({"key": record.public()})


@router.post(
    "/tenants/{tenant_id}/keys/rotate",
    status_code=201,
    summary="Rotate a key",
    openapi_extra=_SECURITY,
)
async def rotate_key(tenant_id: str, s: AdminServices, body: RotateKey | None = None) -> Response:
    body = body or RotateKey()
    issued = await s.db_call(s.keys.rotate, tenant_id, body.key_id, grace=body.grace, actor=_ACTOR)
    return _json({"api_key": issued.api_key, "key": issued.record.public()}, 201)


@router.get("/tenants/{tenant_id}/usage", summary="A tenant's usage", openapi_extra=_SECURITY)
async def tenant_usage(
    tenant_id: str,
    s: AdminServices,
    period: str = Query("day", pattern="^(day|month)$"),
    date: str | None = None,
) -> Response:
    await s.db_call(s.tenants.get, tenant_id)
    report = await s.usage_report(tenant_id, period=period, date=date)
    return _json(report)
