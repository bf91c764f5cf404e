"""`tenantkit storage ...`: look at tenants' files as the operator.

::

    tenantkit storage ls --tenant-id acme-corp [--prefix reports/] [--no-recursive]
    tenantkit storage du --tenant-id acme-corp [--fix]

Both read the storage backend the settings name (``TENANTKIT_STORAGE_BACKEND``;
for ``modal`` pass ``--app`` so the tenant's Volume can be named) and the
local records database for the tenant's tier and storage counters.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from tenantkit.cli._common import command_errors, json_option, main, out
from tenantkit.config import DEFAULT_TIERS, Tier, get_settings
from tenantkit.errors import TenantNotFound
from tenantkit.storage import TenantStorage, scan_usage, storage_for

__all__ = ["storage"]

tenant_id_option = click.option(
    "--tenant-id", required=True, metavar="ID", help="The tenant, e.g. acme-corp."
)
app_option = click.option(
    "--app",
    "app_name",
    default=None,
    metavar="NAME",
    help="The app's name (needed with the modal storage backend).",
)


def _tier(name: str) -> Tier:
    known = DEFAULT_TIERS.get(name)
    if known is not None:
        return known
    # A tier defined by the app, not by tenantkit: show usage without a quota.
    return Tier(name, 1, 1, 1, 1, sys.maxsize, sys.maxsize)


@contextmanager
def _tenant_storage(tenant_id: str, app_name: str | None) -> Iterator[TenantStorage]:
    from tenantkit.config import validate_tenant_id
    from tenantkit.db import open_database

    validate_tenant_id(tenant_id)
    settings = get_settings()
    db = open_database(settings.resolved_database_url())
    try:
        with db.transaction(write=False) as tx:
            tenant = tx.get_tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(f"tenant {tenant_id!r} not found")
        yield storage_for(tenant_id, _tier(tenant.tier), settings, db, app_name=app_name)
    finally:
        db.close()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _quota(value: int) -> int | None:
    return None if value == sys.maxsize else value


@main.group()
def storage() -> None:
    """Look at tenants' files and storage usage."""


@storage.command("ls")
@tenant_id_option
@click.option("--prefix", default="", help="Only paths starting with this, e.g. reports/.")
@click.option(
    "--recursive/--no-recursive",
    default=True,
    show_default=True,
    help="Files at any depth, or one level with folders.",
)
@app_option
@json_option
@command_errors
def ls(tenant_id: str, prefix: str, recursive: bool, app_name: str | None, as_json: bool) -> None:
    """List a tenant's files."""
    with _tenant_storage(tenant_id, app_name) as files:
        entries = files.list(prefix, recursive=recursive)
    if as_json:
        out.json({"tenant_id": tenant_id, "prefix": prefix, "files": [e.public() for e in entries]})
        return
    out.table(
        f"Files of {tenant_id}",
        ["Path", "Size", "Modified (UTC)", "Type"],
        [
            [e.path, "" if e.is_dir else f"{e.size:,}", _when(e.modified), e.public()["type"]]
            for e in entries
        ],
    )


@storage.command("du")
@tenant_id_option
@click.option("--fix", is_flag=True, help="Set the counters to what is stored (no writes running).")
@app_option
@json_option
@command_errors
def du(tenant_id: str, fix: bool, app_name: str | None, as_json: bool) -> None:
    """Show a tenant's storage use against its quota."""
    with _tenant_storage(tenant_id, app_name) as files:
        counted = files.usage()
        stored = files.recount() if fix else scan_usage(files.backend)
        tier = files.tier
    data = {
        "tenant_id": tenant_id,
        "tier": tier.name,
        "bytes": stored[0],
        "files": stored[1],
        "max_bytes": _quota(tier.storage_bytes),
        "max_files": _quota(tier.max_files),
        "counted_bytes": counted.bytes,
        "counted_files": counted.files,
        "fixed": fix,
    }
    if as_json:
        out.json(data)
        return
    rows = [
        ["Bytes", f"{stored[0]:,}", _limit(tier.storage_bytes), f"{counted.bytes:,}"],
        ["Files", f"{stored[1]:,}", _limit(tier.max_files), f"{counted.files:,}"],
    ]
    out.table(f"Storage of {tenant_id} ({tier.name})", ["", "Stored", "Quota", "Counted"], rows)
    if not fix and (counted.bytes, counted.files) != tuple(stored):
        out.line("Counters differ from what is stored; run with --fix when no write is running.")


def _limit(value: int) -> str:
    return "-" if value == sys.maxsize else f"{value:,}"
