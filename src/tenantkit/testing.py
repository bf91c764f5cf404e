"""Helpers for testing your own tenant functions.

Call a function the way the gateway would (arguments validated from its type
hints, a :class:`TenantContext` injected)::

    from tenantkit.testing import call, make_context

    def test_analyze():
        assert call(analyze, {"items": [1, 2, 3]})["mean"] == 2

Or serve the whole gateway on loopback, with a throwaway database and a tenant::

    from tenantkit.testing import local_gateway

    def test_over_http():
        with local_gateway(app, tier="pro") as gw:
            r = gw.client.post("/process", json={"task_type": "analyze", "data": {"items": [1]}})
            assert r.status_code == 200
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenantkit.errors import ConfigurationError
from tenantkit.workers import TenantApp, TenantContext, TenantFunction, function_record

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

    from tenantkit.config import Settings
    from tenantkit.db import UsageEvent
    from tenantkit.gateway import Services

__all__ = ["GatewayHarness", "call", "local_gateway", "make_context", "running_server"]


def make_context(
    tenant_id: str = "test-tenant",
    tier: str = "free",
    *,
    request_id: str | None = None,
    key_id: str | None = "key_test",
    scopes: tuple[str, ...] = (),
    storage: Any = None,
) -> TenantContext:
    """A :class:`TenantContext` for calling a tenant function directly."""
    return TenantContext(
        tenant_id=tenant_id,
        tier=tier,
        request_id=request_id or secrets.token_hex(16),
        key_id=key_id,
        scopes=scopes,
        storage=storage,
    )


def _record(fn: Callable[..., Any] | TenantFunction) -> TenantFunction:
    if isinstance(fn, TenantFunction):
        return fn
    record = function_record(fn)
    if record is None:
        raise ConfigurationError(f"{fn!r} is not a tenant function (decorate it first)")
    return record


def call(
    fn: Callable[..., Any] | TenantFunction,
    arguments: Mapping[str, Any] | None = None,
    *,
    ctx: TenantContext | None = None,
) -> Any:
    """Validate ``arguments`` as the gateway would and call the function.

    Async functions run to completion. Raises ``InvalidArguments`` (422 on the
    gateway) for arguments that do not match the signature, and whatever the
    function raises.
    """
    record = _record(fn)
    validated = record.validate(dict(arguments or {}))
    context = ctx if ctx is not None else make_context()
    if record.is_async:
        return asyncio.run(record.ainvoke(validated, context))
    return record.invoke(validated, context)


@dataclass
class GatewayHarness:
    """A gateway running in process, with one tenant ready to call it.

    Attributes:
        gateway: The FastAPI app.
        services: Its services (database, keys, tenants, admission, meter).
        client: An ``httpx.Client`` on the server, sending the tenant's API key.
        tenant_id: The tenant created for the test.
        api_key: That tenant's key.
        url: The server's base URL (uvicorn on loopback).
    """

    gateway: FastAPI
    services: Services
    client: httpx.Client
    tenant_id: str
    api_key: str
    url: str

    def create_tenant(self, tenant_id: str, tier: str = "free") -> str:
        """Create another tenant; return its API key."""
        _, issued = self.services.tenants.create(tenant_id, tenant_id, tier, actor="test")
        return issued.api_key

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def usage_events(self, tenant_id: str | None = None) -> list[UsageEvent]:
        """Every usage event of a tenant (the meter is flushed first)."""
        self.services.meter.flush()
        with self.services.db.transaction(write=False) as tx:
            return tx.usage_events(tenant_id or self.tenant_id, 0, float("inf"))


@contextmanager
def local_gateway(
    app: TenantApp,
    *,
    tenant_id: str = "test-tenant",
    tier: str | None = None,
    settings: Settings | None = None,
    data_dir: str | Path | None = None,
) -> Iterator[GatewayHarness]:
    """Serve ``app``'s gateway with uvicorn on loopback, on a throwaway SQLite database.

    Args:
        app: The app under test.
        tenant_id: Id of the tenant created for the test.
        tier: Its tier (default: the app's first tier).
        settings: Settings to use (a temporary ``data_dir`` is filled in otherwise).
        data_dir: Where the database goes (default: a temporary folder, removed after).
    """
    import httpx

    from tenantkit.config import get_settings
    from tenantkit.gateway import create_gateway

    temporary = data_dir is None
    folder = (
        Path(tempfile.mkdtemp(prefix="tenantkit-test-")) if data_dir is None else Path(data_dir)
    )
    try:
        if settings is None:
            settings = get_settings(
                data_dir=folder, database_url=None, signing_key=secrets.token_urlsafe(32)
            )
        gateway = create_gateway(app, settings)
        services: Services = gateway.state.tenantkit
        _, issued = services.tenants.create(
            tenant_id, tenant_id, tier or next(iter(app.tiers)), actor="test"
        )
        headers = {"Authorization": f"Bearer {issued.api_key}"}
        with (
            running_server(gateway) as url,
            httpx.Client(base_url=url, headers=headers, timeout=60) as client,
        ):
            yield GatewayHarness(gateway, services, client, tenant_id, issued.api_key, url)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def running_server(gateway: Any, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread on a free port.

    Yields the base URL (``http://127.0.0.1:PORT``). Leaving the block stops
    the server gracefully, running the app's shutdown (which flushes the meter).
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(gateway, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
