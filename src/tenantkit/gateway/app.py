"""``create_gateway``: the ASGI app serving a :class:`~tenantkit.workers.TenantApp`.

::

    from tenantkit.gateway import create_gateway
    api = create_gateway(app)          # a FastAPI app; run it with any ASGI server

Routes follow the design's HTTP contract: ``/health``, ``/tenant``,
``/usage``, ``/rate-limit``, ``/process``, ``/batch``, ``/functions/{name}``,
each function's own ``path``, ``/docs`` and the ``/admin`` API. Starting the
app starts the usage meter; stopping it (SIGTERM included) flushes it.

Key scopes: a key minted without scopes may use every tenant route. A key
with scopes is held to them (``*`` and ``prefix:*`` are wildcards):

========================================  =============================
route                                     scope needed
========================================  =============================
``GET /tenant``                           ``tenant:read``
``GET /usage``, ``GET /rate-limit``       ``usage:read``
a function (``/functions/{name}``,        ``functions:<name>``
its ``path``, ``/process``, ``/batch``)
``GET /files...``                         ``files:read``
``PUT``/``DELETE /files/...``             ``files:write``
========================================  =============================

Request bodies are at most ``Settings.max_body_bytes`` (1 MiB by default;
413 over it), with one exception: ``PUT /files/...`` is exempt from
``max_body_bytes``. An upload is streamed to the tenant's storage chunk by
chunk, never held in memory, and its bound is the tier's storage quota
(``storage_bytes``): 413 when the declared size is over the whole quota, 429
when it is over what is left, and a chunked upload is cut off as soon as it
passes it (see :mod:`tenantkit.gateway.files`).

Numbers are strict JSON both ways. A request body holding ``NaN``,
``Infinity``, ``-Infinity`` or a literal too large for a 64-bit float
(``1e400``) is refused with 422 (``finite_number`` errors locating each one)
on ``/functions/{name}``, a function's own path, ``/process`` and, per task,
``/batch``, whatever the parameter's type (``Any`` included). A function's
return value is written as strict JSON: a non-finite float in it (NaN,
infinity, from Python, NumPy or a pydantic model) becomes ``null``, as
JavaScript's ``JSON.stringify`` does, rather than an invalid ``NaN`` token
or a 500 (see :mod:`tenantkit.gateway.encoding`).

Costs in ``/usage`` (and the admin usage route) use the price table in
``Settings.prices`` (``TENANTKIT_PRICES``, JSON), read once when the gateway
is built.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.types import DecoratedCallable
from starlette.responses import Response
from starlette.routing import Route

from tenantkit.config import Settings, get_settings
from tenantkit.db import Database, open_database
from tenantkit.gateway.admission_queue import AdmissionQueue
from tenantkit.gateway.deps import (
    CurrentPrincipal,
    Services,
    services_of,
)
from tenantkit.gateway.dispatch import (
    call_batch,
    call_function,
    call_process,
    unknown_function,
)
from tenantkit.gateway.encoding import encode_json
from tenantkit.gateway.middleware import GatewayMiddleware
from tenantkit.gateway.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from tenantkit.gateway.writes import SerializedWrites
from tenantkit.workers import Executor, LocalExecutor, TenantApp, TenantFunction

__all__ = ["create_gateway"]

_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_PROBLEM = {"description": "Problem details (RFC 9457)", "content": {PROBLEM_MEDIA_TYPE: {}}}
_ERRORS: dict[int | str, dict[str, Any]] = dict.fromkeys(
    (401, 403, 404, 413, 422, 429, 500, 503, 504), _PROBLEM
)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tenantkit")
    except Exception:
        return "0"


def create_gateway(
    app: TenantApp,
    settings: Settings | None = None,
    *,
    executor: Executor | None = None,
    db: Database | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the gateway for ``app``.

    Args:
        app: The tenant functions to serve.
        settings: Defaults to :func:`~tenantkit.config.get_settings`.
        executor: Where calls run (default: a :class:`~tenantkit.workers.LocalExecutor`,
            stopped with the app; one passed in is left to its owner).
        db: The records database (default: opened from ``settings``; then the
            gateway closes it on shutdown).
        clock: UNIX time source for keys, limits and metering.

    Returns:
        A FastAPI app; its state holds the services as ``app.state.tenantkit``.
    """
    from tenantkit.auth import KeyManager
    from tenantkit.limits import Admission
    from tenantkit.metering import PriceTable, UsageMeter
    from tenantkit.tenants import TenantService

    settings = settings if settings is not None else get_settings()
    prices = PriceTable.from_mapping(settings.prices)
    owns_db = db is None
    opened = db if db is not None else open_database(settings.resolved_database_url())
    database: Database = SerializedWrites(opened) if opened.backend == "sqlite" else opened
    keys = KeyManager(database, settings, clock=clock)
    meter = UsageMeter(
        database,
        flush_interval=settings.usage_flush_interval,
        buffer_size=settings.usage_buffer_size,
    )
    admission = Admission(
        database,
        clock=clock,
        fail_open=settings.rate_limit_fail_open,
        pending_compute=meter.pending_compute,
    )
    services = Services(
        app=app,
        settings=settings,
        db=database,
        keys=keys,
        tenants=TenantService(database, keys, tiers=app.tiers, clock=clock),
        admission=admission,
        meter=meter,
        executor=executor if executor is not None else LocalExecutor(),
        admissions=AdmissionQueue(admission),
        clock=clock,
        owns_db=owns_db,
        inline_db=database.backend == "sqlite",
        storage_factory=_storage_factory(settings, database, app.name),
        prices=prices,
    )

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        await services.meter.start()
        services.admissions.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(services.admissions.close)
            await services.meter.stop()
            keys.close()
            if executor is None:  # ours: stop its thread pool
                close = getattr(services.executor, "close", None)
                if callable(close):
                    close()
            if owns_db:
                database.close()

    api = FastAPI(
        title=app.name,
        version=_version(),
        description=(
            f"The {app.name} API. Authenticate with `Authorization: Bearer <API key>`. "
            "Errors are RFC 9457 problem details carrying a `request_id`."
        ),
        lifespan=lifespan,
    )
    api.state.tenantkit = services
    install_problem_handlers(api)
    _add_tenant_routes(api)
    components, paths = _add_function_routes(api, app)
    from tenantkit.gateway.admin import router as admin_router
    from tenantkit.gateway.files import router as files_router

    api.include_router(admin_router)
    api.include_router(files_router)
    api.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes)
    _install_openapi(api, components, paths)
    return api


def _storage_factory(settings: Settings, db: Database, app_name: str) -> Callable[[str, Any], Any]:
    from tenantkit.storage import storage_for

    def factory(tenant_id: str, tier: Any) -> Any:
        # app_name names each tenant's Volume with the Modal backend.
        return storage_for(tenant_id, tier, settings, db, app_name=app_name)

    return factory


def _add_tenant_routes(api: FastAPI) -> None:
    def tenant_get(path: str, *, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """A ``GET`` route of the tenant API: bearer key, problem responses."""
        return api.get(
            path,
            tags=["tenant"],
            summary=summary,
            responses=_ERRORS,
            openapi_extra={"security": _SECURITY},
        )

    @api.get("/health", tags=["service"], summary="Health check")
    async def health(request: Request) -> dict[str, Any]:
        services = services_of(request)
        return {
            "status": "ok",
            "app": services.app.name,
            "version": api.version,
            "functions": sorted(services.app.functions),
        }

    @tenant_get("/tenant", summary="The caller's tenant record")
    async def tenant(rc: CurrentPrincipal) -> dict[str, Any]:
        rc.require_scope("tenant:read")
        tier = rc.tier
        return {
            **rc.principal.tenant.public(),
            "key_id": rc.principal.key.id,
            "limits": {
                "requests_per_hour": tier.requests_per_hour,
                "burst": tier.burst,
                "max_concurrent": tier.max_concurrent,
                "compute_seconds_per_day": tier.compute_seconds_per_day,
                "storage_bytes": tier.storage_bytes,
                "max_files": tier.max_files,
            },
        }

    @tenant_get("/usage", summary="The caller's usage and estimated cost")
    async def usage(
        rc: CurrentPrincipal,
        period: str = Query("day", pattern="^(day|month)$"),
        date: str | None = Query(None, description="YYYY-MM-DD (UTC); default today"),
    ) -> Response:
        rc.require_scope("usage:read")
        report = await rc.services.usage_report(rc.tenant_id, period=period, date=date)
        return Response(encode_json(report), media_type="application/json")

    @tenant_get("/rate-limit", summary="The caller's limits and what is left of them")
    async def rate_limit(rc: CurrentPrincipal) -> dict[str, Any]:
        rc.require_scope("usage:read")
        services = rc.services
        status: dict[str, Any] = await services.db_call(
            services.admission.status, rc.tenant_id, rc.tier
        )
        return status


def _function_body(schema_ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": schema_ref}}},
    }


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    body_ref: str,
    responses: dict[int | str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "tags": ["functions"],
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "requestBody": _function_body(body_ref),
        "responses": {str(status): spec for status, spec in responses.items()},
        "security": _SECURITY,
    }


def _add_function_routes(api: FastAPI, app: TenantApp) -> tuple[dict[str, Any], dict[str, Any]]:
    """One documented route per function, plus the shared ``/process`` and ``/batch``.

    These are plain Starlette routes (no FastAPI dependency solving or response
    model on the hot path): each reads and validates its own body. Their
    OpenAPI operations are returned for :func:`_install_openapi`.

    Returns:
        ``(components, paths)`` for the OpenAPI document.
    """
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    process_variants: list[dict[str, Any]] = []

    def add(path: str, endpoint: Callable[[Request], Any], operation: dict[str, Any]) -> None:
        api.router.routes.append(Route(path, endpoint, methods=["POST"]))
        paths[path] = {"post": operation}

    for function in app.functions.values():
        template = "#/components/schemas/{model}"
        schema = function.input_schema(ref_template=template)
        components.update(schema.pop("$defs", {}))
        model = schema.get("title", function.input_model.__name__)
        components[model] = schema
        ref = f"#/components/schemas/{model}"
        output = function.output_schema(ref_template=template)
        ok: dict[str, Any] = {"description": "The function's return value"}
        if output is not None:
            components.update(output.pop("$defs", {}))
            ok["content"] = {"application/json": {"schema": output}}
        responses: dict[int | str, dict[str, Any]] = {200: ok, **_ERRORS}
        description = _describe(function)
        endpoint = _endpoint(function)
        add(
            f"/functions/{function.name}",
            endpoint,
            _operation(
                f"call_{function.name}", f"Call {function.name}", description, ref, responses
            ),
        )
        if function.options.path is not None:
            add(
                function.options.path,
                endpoint,
                _operation(
                    f"path_{function.name}",
                    f"Call {function.name} on its own path",
                    description,
                    ref,
                    responses,
                ),
            )
        process_variants.append(
            {
                "type": "object",
                "title": f"Process{model}",
                "properties": {"task_type": {"const": function.name}, "data": {"$ref": ref}},
                "required": ["task_type", "data"],
            }
        )

    process_schema: dict[str, Any] = (
        {"oneOf": process_variants}
        if process_variants
        else {"type": "object", "properties": {"task_type": {"type": "string"}}}
    )
    components["ProcessRequest"] = process_schema
    components["BatchRequest"] = {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ProcessRequest"},
                "minItems": 1,
            }
        },
        "required": ["tasks"],
    }
    add(
        "/process",
        call_process,
        _operation(
            "process",
            "Run one task",
            '`{"task_type": <function>, "data": {<its arguments>}}`',
            "#/components/schemas/ProcessRequest",
            _ERRORS,
        ),
    )
    add(
        "/batch",
        call_batch,
        _operation(
            "batch",
            "Run several tasks",
            "Every task counts against the rate limit; results come back in order, "
            "each with its own status.",
            "#/components/schemas/BatchRequest",
            _ERRORS,
        ),
    )

    async def unknown(request: Request) -> Response:
        return await unknown_function(request, request.path_params["name"])

    api.router.routes.append(Route("/functions/{name}", unknown, methods=["POST"]))
    return components, paths


def _endpoint(function: TenantFunction) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return await call_function(request, function)

    endpoint.__name__ = f"call_{function.name}"
    return endpoint


def _describe(function: TenantFunction) -> str:
    options = function.options
    lines = [function.description or f"Tenant function `{function.name}`."]
    facts = [f"timeout {options.timeout:g}s"]
    if options.gpu_type:
        facts.append(f"GPU {options.gpu_type} x{options.gpu_count}")
    if options.tiers is not None:
        facts.append("tiers: " + ", ".join(sorted(options.tiers)))
    lines.append("\n\n" + "; ".join(facts) + ".")
    return "".join(lines)


def _install_openapi(api: FastAPI, components: dict[str, Any], paths: dict[str, Any]) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        schema = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
        )
        schema.setdefault("paths", {}).update(paths)
        parts = schema.setdefault("components", {})
        parts.setdefault("schemas", {}).update(components)
        parts["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A tenant API key"},
            "adminKey": {"type": "http", "scheme": "bearer", "description": "The admin key"},
        }
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
