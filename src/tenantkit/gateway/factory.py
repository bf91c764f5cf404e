"""An import string for uvicorn's worker processes (``tenantkit serve --workers N``).

uvicorn starts each worker from ``tenantkit.gateway.factory:gateway_from_env``
with ``factory=True``; the app reference travels in ``TENANTKIT_SERVE_APP``.
Every worker opens the same records database (SQLite in WAL mode, or
PostgreSQL), so limits stay exact across them.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from tenantkit.config import get_settings
from tenantkit.errors import ConfigurationError
from tenantkit.workers import load_app

__all__ = ["APP_ENV", "gateway_from_env"]

APP_ENV = "TENANTKIT_SERVE_APP"


def gateway_from_env() -> FastAPI:
    """Build the gateway for the app named by ``$TENANTKIT_SERVE_APP``."""
    from tenantkit.gateway.app import create_gateway

    ref = os.environ.get(APP_ENV)
    if not ref:
        raise ConfigurationError(f"{APP_ENV} is not set: start the server with `tenantkit serve`")
    return create_gateway(load_app(ref), get_settings())
