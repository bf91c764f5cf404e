"""`tenantkit db ...`: schema migrations, backup and restore, retention.

::

    tenantkit db migrate
    tenantkit db export > backup.jsonl          # or -o backup.jsonl
    tenantkit db import backup.jsonl            # idempotent; '-' reads stdin
    tenantkit db prune [--days 90]              # drop old usage events, keep totals

Each acts on the records database of this folder (``TENANTKIT_DATABASE_URL``,
default SQLite under ``.tenantkit/``), or the one named by ``--database-url``.

An export holds records, not the signing key: API keys verify only with the
key that signed them, so restore ``.tenantkit/signing-secret`` (or set
``TENANTKIT_SIGNING_KEY``) along with the records; ``db import`` warns when
neither is there.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from tenantkit.auth.signing import GENERATED_KEY_FILES
from tenantkit.cli._common import command_errors, json_option, main, out
from tenantkit.config import Settings, get_settings
from tenantkit.db import Database, open_database
from tenantkit.db.backup import BackupSummary, export_records, import_records
from tenantkit.db.maintenance import prune_usage

__all__ = ["db"]

P = ParamSpec("P")
R = TypeVar("R")


def database_url_option(fn: Callable[P, R]) -> Callable[P, R]:
    """Add ``--database-url`` (default: the settings' database)."""
    return click.option(
        "--database-url",
        default=None,
        metavar="URL",
        help="sqlite:///PATH or postgresql://... (default: TENANTKIT_DATABASE_URL or .tenantkit/).",
    )(fn)


@contextmanager
def _open(url: str | None, *, migrate: bool = True) -> Iterator[Database]:
    database = open_database(url or get_settings().resolved_database_url(), migrate=migrate)
    try:
        yield database
    finally:
        database.close()


def _table_summary(title: str, summary: BackupSummary) -> None:
    rows = [[table, count] for table, count in sorted(summary.tables.items())]
    out.table(title, ["Table", "Rows"], [*rows, ["total", summary.rows]])


def missing_signing_key(settings: Settings) -> str | None:
    """The warning to print after an import when no signing key would verify its keys."""
    if settings.signing_key is not None:
        return None
    path = settings.data_dir / GENERATED_KEY_FILES[settings.jwt_algorithm]
    if path.exists():
        return None
    return (
        f"Warning: no signing key in {path} and TENANTKIT_SIGNING_KEY is not set: every "
        "restored API key will be refused until you restore the signing key of the exported "
        "deployment there (or set TENANTKIT_SIGNING_KEY to it)"
    )


@main.group()
def db() -> None:
    """Migrate, back up, restore and prune the records database."""


@db.command("migrate")
@database_url_option
@json_option
@command_errors
def migrate(database_url: str | None, as_json: bool) -> None:
    """Apply pending schema migrations (safe to run while gateways are up)."""
    with _open(database_url, migrate=False) as database:
        before = database.schema_version()
        after = database.migrate()
    if as_json:
        out.json({"backend": database.backend, "from_version": before, "schema_version": after})
    elif after == before:
        out.line(f"Schema is up to date (version {after}).")
    else:
        out.line(f"Migrated the schema from version {before} to {after}.")


@db.command("export")
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    metavar="PATH",
    help="File to write ('-': standard output).",
)
@database_url_option
@json_option
@command_errors
def export(output: str, database_url: str | None, as_json: bool) -> None:
    """Write every record as JSON Lines (a consistent snapshot)."""
    with _open(database_url) as database:
        if output == "-":
            summary = export_records(database, sys.stdout)
            click.echo(f"Exported {summary.rows} rows.", err=True)
            return
        target = Path(output)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                summary = export_records(database, f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if as_json:
        out.json({"output": str(target), **summary.as_dict()})
    else:
        _table_summary(f"Exported to {target}", summary)


@db.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@database_url_option
@json_option
@command_errors
def import_(source: str, database_url: str | None, as_json: bool) -> None:
    """Restore records from an export (all or nothing; importing twice is harmless)."""
    with _open(database_url) as database:
        if source == "-":
            summary = import_records(database, sys.stdin)
        else:
            with open(source, encoding="utf-8") as f:
                summary = import_records(database, f)
    warning = missing_signing_key(get_settings())
    if warning is not None:
        click.echo(warning, err=True)
    if as_json:
        out.json(summary.as_dict())
    else:
        _table_summary(f"Imported from {source}", summary)


@db.command("prune")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Keep events this many days old (default: TENANTKIT_USAGE_RETENTION_DAYS, 90).",
)
@database_url_option
@json_option
@command_errors
def prune(days: float | None, database_url: str | None, as_json: bool) -> None:
    """Delete usage events past retention; daily totals (and reports) stay the same."""
    retention = days if days is not None else get_settings().usage_retention_days
    with _open(database_url) as database:
        result = prune_usage(database, retention_days=retention)
    if as_json:
        out.json(result.as_dict())
    else:
        out.line(f"Pruned {result.deleted} usage events older than {retention:g} days.")
