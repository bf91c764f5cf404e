"""tenantkit: plain Python functions as a multi-tenant SaaS API on Modal.

Mark functions with :func:`tenant_function`, serve them locally with
``tenantkit serve app.py`` or deploy them with ``tenantkit deploy app.py``::

    from tenantkit import TenantApp, TenantContext, tenant_function

    app = TenantApp("multi-tenant-saas")

    @tenant_function(gpu="A100", timeout=600, tiers={"pro", "enterprise"})
    def embed(texts: list[str], ctx: TenantContext) -> dict:
        ctx.storage.write_json("last.json", {"n": len(texts)})
        return {"n": len(texts)}

Importing this package stays cheap (it runs on every Modal cold start): the
names that need httpx, FastAPI or a storage backend load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tenantkit.config import DEFAULT_TIERS, Settings, Tier
from tenantkit.errors import (
    AuthenticationError,
    ConcurrencyLimitExceeded,
    ConfigurationError,
    PermissionDenied,
    QuotaExceeded,
    RateLimitExceeded,
    ServiceUnreachable,
    StorageError,
    TenantKitError,
)
from tenantkit.workers import (
    Envelope,
    LocalExecutor,
    TenantApp,
    TenantContext,
    load_app,
    tenant_function,
)

if TYPE_CHECKING:
    from tenantkit.client import AsyncClient, Client
    from tenantkit.gateway import create_gateway
    from tenantkit.storage import TenantStorage, storage_for

__all__ = [
    "DEFAULT_TIERS",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConcurrencyLimitExceeded",
    "ConfigurationError",
    "Envelope",
    "LocalExecutor",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimitExceeded",
    "ServiceUnreachable",
    "Settings",
    "StorageError",
    "TenantApp",
    "TenantContext",
    "TenantKitError",
    "TenantStorage",
    "Tier",
    "__version__",
    "create_gateway",
    "load_app",
    "storage_for",
    "tenant_function",
]

__version__ = "0.1.0"

_LAZY = {
    "AsyncClient": "tenantkit.client",
    "Client": "tenantkit.client",
    "create_gateway": "tenantkit.gateway",
    "TenantStorage": "tenantkit.storage",
    "storage_for": "tenantkit.storage",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tenantkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
