"""What a tenant function learns about the call it is serving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TenantContext"]


@dataclass(slots=True)
class TenantContext:
    """The caller of a tenant function, injected into a parameter annotated with it.

    It is never read from the request body, and it pickles, so it travels to
    a Modal container with the call.

    Attributes:
        tenant_id: The calling tenant.
        tier: The tenant's tier name at the time of the call.
        request_id: The request id the client gets back in ``X-Request-ID``.
        key_id: Id of the API key that authenticated the call.
        scopes: The key's scopes (empty: unrestricted).
        storage: The tenant's own files (``TenantStorage``), or ``None`` where
            storage is not configured.

    Example:
        >>> ctx = TenantContext(tenant_id="acme-corp", tier="pro", request_id="r1")
        >>> ctx.tenant_id
        'acme-corp'
    """

    tenant_id: str
    tier: str
    request_id: str
    key_id: str | None = None
    scopes: tuple[str, ...] = ()
    storage: Any = field(default=None, repr=False)
