"""`tenantkit tenant ...`: the tenant lifecycle, with the seed's verbs.

::

    tenantkit tenant create --tenant-id acme-corp --name "Acme Corporation" \\
        --tier pro --email admin@acme.com
    tenantkit tenant list
    tenantkit tenant info --tenant-id acme-corp
    tenantkit tenant upgrade --tenant-id acme-corp --tier enterprise
    tenantkit tenant suspend --tenant-id acme-corp [--reason "unpaid invoice"]
    tenantkit tenant resume --tenant-id acme-corp
    tenantkit tenant delete --tenant-id acme-corp [--yes]
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.markup import escape

from tenantkit.cli._common import command_errors, json_option, main, out
from tenantkit.cli._target import target_for, url_option
from tenantkit.cli.key import (
    format_time,
    issued_json,
    print_table,
    show_issued,
    show_keys,
    tenant_id_option,
)
from tenantkit.db.base import Tenant

__all__ = ["show_tenants", "tenant"]


def show_tenants(title: str, tenants: Sequence[Tenant]) -> None:
    """Print tenant records as a table."""
    print_table(
        title,
        ["Tenant ID", "Name", "Tier", "Status", "Email", "Created"],
        [
            [
                t.id,
                escape(t.name),
                escape(t.tier),
                t.status if t.active else f"{t.status}: {escape(t.suspended_reason or '')}",
                escape(t.email or ""),
                format_time(t.created_at),
            ]
            for t in tenants
        ],
    )


@main.group()
def tenant() -> None:
    """Create and manage tenants."""


@tenant.command("create")
@tenant_id_option
@click.option("--name", required=True, help="Display name, e.g. 'Acme Corporation'.")
@click.option("--tier", default="free", show_default=True, help="free, pro or enterprise.")
@click.option("--email", default=None, help="Contact address (stored, never put in a key).")
@url_option
@json_option
@command_errors
def create_tenant(
    tenant_id: str, name: str, tier: str, email: str | None, url: str | None, as_json: bool
) -> None:
    """Create a tenant and print its first API key (once)."""
    with target_for(url) as target:
        record, issued = target.create_tenant(tenant_id, name, tier, email)
    if as_json:
        out.json({"tenant": record.public(), **issued_json(issued)})
        return
    show_tenants("Tenant created", [record])
    show_issued(issued)


@tenant.command("list")
@click.option("--limit", default=100, show_default=True, help="Tenants per page (1-1000).")
@click.option("--after", default=None, metavar="ID", help="Start after this tenant id.")
@url_option
@json_option
@command_errors
def list_tenants(limit: int, after: str | None, url: str | None, as_json: bool) -> None:
    """List tenants, ordered by id."""
    with target_for(url) as target:
        tenants, next_after = target.list_tenants(limit=limit, after=after)
    if as_json:
        out.json({"tenants": [t.public() for t in tenants], "next_after": next_after})
        return
    show_tenants(f"Tenants ({len(tenants)})", tenants)
    if next_after is not None:
        out.line(f"More: tenantkit tenant list --after {next_after}")


@tenant.command("info")
@tenant_id_option
@url_option
@json_option
@command_errors
def tenant_info(tenant_id: str, url: str | None, as_json: bool) -> None:
    """Show a tenant and its keys."""
    with target_for(url) as target:
        record = target.get_tenant(tenant_id)
        keys = target.list_keys(tenant_id)
    if as_json:
        out.json({"tenant": record.public(), "keys": [k.public() for k in keys]})
        return
    show_tenants(f"Tenant {record.id}", [record])
    show_keys("API keys", keys)


@tenant.command("upgrade")
@tenant_id_option
@click.option("--tier", required=True, help="The new tier (upgrades and downgrades).")
@url_option
@json_option
@command_errors
def upgrade_tenant(tenant_id: str, tier: str, url: str | None, as_json: bool) -> None:
    """Move a tenant to another tier; its keys keep working."""
    with target_for(url) as target:
        record = target.change_tier(tenant_id, tier)
    if as_json:
        out.json({"tenant": record.public()})
        return
    out.line(f"Tenant {record.id} is now on the {escape(record.tier)} tier.")


@tenant.command("suspend")
@tenant_id_option
@click.option("--reason", default=None, help="Why (kept in the record and audit trail).")
@url_option
@json_option
@command_errors
def suspend_tenant(tenant_id: str, reason: str | None, url: str | None, as_json: bool) -> None:
    """Suspend a tenant: its keys are refused until it is resumed (running
    gateways stop accepting them within TENANTKIT_AUTH_CACHE_TTL, 1 s by default)."""
    with target_for(url) as target:
        record = target.suspend(tenant_id, reason)
    if as_json:
        out.json({"tenant": record.public()})
        return
    out.line(f"Tenant {record.id} is suspended.")


@tenant.command("resume")
@tenant_id_option
@url_option
@json_option
@command_errors
def resume_tenant(tenant_id: str, url: str | None, as_json: bool) -> None:
    """Make a suspended tenant active again."""
    with target_for(url) as target:
        record = target.resume(tenant_id)
    if as_json:
        out.json({"tenant": record.public()})
        return
    out.line(f"Tenant {record.id} is active.")


@tenant.command("delete")
@tenant_id_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@url_option
@json_option
@command_errors
def delete_tenant(tenant_id: str, yes: bool, url: str | None, as_json: bool) -> None:
    """Delete a tenant and its keys (usage history is kept)."""
    with target_for(url) as target:
        if not yes:
            target.get_tenant(tenant_id)  # an unknown tenant fails before the question
            click.confirm(
                f"Delete tenant {tenant_id!r} and all its keys? This cannot be undone", abort=True
            )
        target.delete_tenant(tenant_id)
    if as_json:
        out.json({"deleted": True, "tenant_id": tenant_id})
        return
    out.line(f"Deleted tenant {escape(tenant_id)}.")
