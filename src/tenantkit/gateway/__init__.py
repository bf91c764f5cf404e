"""The HTTP gateway: the ASGI app that authenticates, admits, dispatches and meters.

Build it with :func:`create_gateway`; other routers depend on
:func:`~tenantkit.gateway.deps.current_principal` for the caller.
"""

from __future__ import annotations

from tenantkit.gateway.app import create_gateway
from tenantkit.gateway.deps import RequestContext, Services, current_principal

__all__ = ["RequestContext", "Services", "create_gateway", "current_principal"]
