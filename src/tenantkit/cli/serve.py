"""``tenantkit serve APP.py``: the local development server (no Modal account needed)."""

from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path

import click

from tenantkit.cli._common import command_errors, load_user_app, main, out
from tenantkit.config import Settings, get_settings
from tenantkit.errors import ConfigurationError

__all__ = ["LOG_LEVELS", "check_port_free", "serve"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""uvicorn's log levels."""


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only shown to the user
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once, as uvicorn will, so a port in use is one clear line.

    Raises:
        ConfigurationError: the host does not resolve, or the port is taken.
    """
    if port == 0:  # the system picks a free port
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host!r}: {exc.strerror}") from exc
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigurationError(
                f"cannot listen on {_display_host(host)}:{port}: {reason} "
                "(is another server running there? pick another --port)"
            ) from exc


def _first_tenant_hint(settings: Settings) -> str | None:
    """The command creating a first tenant, when the database has none."""
    from tenantkit.db import open_database

    db = open_database(settings.resolved_database_url())
    try:
        with db.transaction(write=False) as tx:
            if tx.count_tenants() > 0:
                return None
    finally:
        db.close()
    return (
        "tenantkit tenant create --tenant-id acme-corp --name "
        + shlex.quote("Acme Corporation")
        + " --tier pro --email admin@acme.com"
    )


def _prepare_signing_key(settings: Settings) -> None:
    """Load (or generate, once) the signing key before workers start, so they share it."""
    from tenantkit.auth import KeyManager
    from tenantkit.db import open_database

    db = open_database(settings.resolved_database_url())
    try:
        KeyManager(db, settings).keyring  # noqa: B018 - loads or creates the key
    finally:
        db.close()


@main.command()
@click.argument("app_ref", metavar="APP.py[::NAME]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0: any free port).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (they share the records database).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="uvicorn log level.",
)
@command_errors
def serve(app_ref: str, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve APP.py's tenant functions over HTTP on this machine."""
    import uvicorn

    from tenantkit.gateway import create_gateway
    from tenantkit.gateway.factory import APP_ENV
    from tenantkit.workers import split_ref

    app = load_user_app(app_ref)
    check_port_free(host, port)
    log_level = log_level.lower()
    settings = get_settings()
    _prepare_signing_key(settings)
    hint = _first_tenant_hint(settings)
    url = f"http://{_display_host(host)}:{port}"
    out.line(f"Serving {app.name!r} ({len(app.functions)} functions) at {url}")
    out.line(f"API docs: {url}/docs")
    if hint is not None:
        out.line("No tenants yet. Create the first one (it prints an API key) with:")
        out.line(f"  {hint}")
    if workers == 1:
        uvicorn.run(create_gateway(app, settings), host=host, port=port, log_level=log_level)
        return
    target, name = split_ref(app_ref)
    if target.endswith(".py") or Path(target).exists():
        target = str(Path(target).resolve())
    os.environ[APP_ENV] = f"{target}::{name}" if name else target
    uvicorn.run(
        "tenantkit.gateway.factory:gateway_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
