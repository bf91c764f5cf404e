"""`tenantkit usage ...`: a tenant's usage and estimated cost.

::

    tenantkit usage show --tenant-id acme-corp                     # today (UTC)
    tenantkit usage show --tenant-id acme-corp --period month --date 2026-12
    tenantkit usage show --tenant-id acme-corp --format csv > usage.csv
    tenantkit usage show --tenant-id acme-corp --json
    tenantkit usage show --tenant-id acme-corp --deleted --period month   # after deletion
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from tenantkit.cli._common import command_errors, json_option, main, out
from tenantkit.cli._target import target_for, url_option
from tenantkit.metering.report import (
    ROW_COLUMNS,
    money,
    report_csv,
    report_rows,
    reports_csv,
)

__all__ = ["show_deleted", "show_report", "usage"]


@main.group()
def usage() -> None:
    """Show tenants' usage and estimated cost."""


@usage.command("show")
@click.option("--tenant-id", required=True, help="The tenant, e.g. acme-corp.")
@click.option(
    "--period",
    type=click.Choice(["day", "month"]),
    default="day",
    show_default=True,
    help="A UTC day (hourly breakdown) or month (daily breakdown).",
)
@click.option(
    "--date",
    default=None,
    metavar="DATE",
    help="YYYY-MM-DD, or YYYY-MM for a month (default: now, UTC).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--deleted",
    is_flag=True,
    help="Usage a deleted tenant of this id left, one report per deletion.",
)
@url_option
@json_option
@command_errors
def show(
    tenant_id: str,
    period: str,
    date: str | None,
    fmt: str,
    deleted: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Show a tenant's usage for a day or a month, with a cost estimate."""
    if deleted:
        show_deleted(tenant_id, period=period, date=date, fmt=fmt, url=url, as_json=as_json)
        return
    with target_for(url) as target:
        report = target.usage(tenant_id, period=period, date=date)
    if as_json or fmt == "json":
        out.json(report)
    elif fmt == "csv":
        click.echo(report_csv(report), nl=False)
    else:
        show_report(report)


def show_deleted(
    tenant_id: str, *, period: str, date: str | None, fmt: str, url: str | None, as_json: bool
) -> None:
    """Print the reports of every archive a deleted ``tenant_id`` left."""
    with target_for(url) as target:
        reports = target.deleted_usage(tenant_id, period=period, date=date)
    if as_json or fmt == "json":
        archived = [r["tenant_id"] for r in reports]
        out.json({"tenant_id": tenant_id, "archived_ids": archived, "reports": reports})
    elif fmt == "csv":
        click.echo(reports_csv(reports), nl=False)
    elif not reports:
        out.line(f"No usage of a deleted tenant {tenant_id!r} is archived.")
    else:
        ids = ", ".join(r["tenant_id"] for r in reports)
        out.line(f"Deleted tenant {tenant_id!r}: usage archived as {ids}")
        for report in reports:
            show_report(report)


def show_report(report: Mapping[str, Any]) -> None:
    """Print a usage report as tables: totals and functions, the breakdown, the cost."""
    rows = report_rows(report)
    columns = [c.replace("_", " ").capitalize() for c in ROW_COLUMNS[1:]]
    title = f"Usage of {report['tenant_id']} — {report['period']} {report['date']} (UTC)"
    summary = [r for r in rows if r[0] in ("total", "function")]
    out.table(
        title,
        ["Function", *columns[1:]],
        [["(all)" if r[0] == "total" else r[1], *r[2:]] for r in summary],
    )
    breakdown = [r for r in rows if r[0] in ("hour", "day") and r[2]]
    if breakdown:
        unit = "Hour" if report["period"] == "day" else "Day"
        out.table(f"By {unit.lower()}", [unit, *columns[1:]], [r[1:] for r in breakdown])
    storage = report.get("storage", {})
    cost = report["cost"]
    currency = cost.get("currency", "")
    out.line(f"Storage: {storage.get('bytes', 0):,} bytes in {storage.get('files', 0):,} files")
    out.line(
        f"Estimated cost: {money(cost['total'])} {currency} "
        f"(requests {money(cost['requests'])}, compute {money(cost['compute'])}, "
        f"GPU {money(cost['gpu'])}, storage {money(cost['storage'])})"
    )
