"""`tenantkit key ...`: create, list, revoke and rotate a tenant's API keys.

::

    tenantkit key create --tenant-id acme-corp [--label ci] [--scope files:read] [--expires-in 30d]
    tenantkit key list --tenant-id acme-corp
    tenantkit key revoke --tenant-id acme-corp --key-id key_...
    tenantkit key rotate --tenant-id acme-corp [--key-id key_...] [--grace 24h]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import click
from rich.markup import escape
from rich.table import Table

from tenantkit.auth.keys import IssuedKey
from tenantkit.cli._common import command_errors, json_option, main, out
from tenantkit.cli._target import target_for, url_option
from tenantkit.db.base import ApiKeyRecord

__all__ = [
    "DURATION",
    "NAMED_SCOPES",
    "SCOPE",
    "Duration",
    "Scope",
    "check_scope",
    "format_time",
    "key",
    "key_state",
    "parse_duration",
    "print_table",
    "show_issued",
    "show_keys",
]

SAVE_NOTICE = "Save it, it is not shown again."

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``24h``, ``7d``, ``1h30m`` or ``90``.

    Raises:
        ValueError: for anything else.

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    while pos < len(cleaned):
        match = _PART.match(cleaned, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        number, unit = match.groups()
        if not unit and (pos != 0 or match.end() != len(cleaned)):  # bare seconds stand alone
            raise ValueError(f"invalid duration {text!r}")
        total += float(number) * _UNITS[unit or "s"]
        pos = match.end()
    return total


class Duration(click.ParamType[float]):
    """A click parameter taking ``30s``, ``15m``, ``24h``, ``7d`` (seconds as a float)."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration like 30s, 15m, 24h or 7d", param, ctx)


DURATION = Duration()

NAMED_SCOPES = ("tenant:read", "usage:read", "files:read", "files:write")
"""Scopes that stand for a fixed set of routes (``functions:<name>`` names a function)."""

_FUNCTION_SCOPE = re.compile(r"functions:(?:[A-Za-z_][A-Za-z0-9_-]{0,53}|\*)")
_WILDCARDS = ("*", "tenant:*", "usage:*", "files:*")


def check_scope(scope: str) -> str:
    """``scope`` if a key may carry it, else a ``ValueError`` listing the valid ones.

    Valid: ``tenant:read``, ``usage:read``, ``files:read``, ``files:write``,
    ``functions:<function name>``, and the wildcards ``*``, ``functions:*``,
    ``files:*``.

    Example:
        >>> check_scope("functions:embed")
        'functions:embed'
    """
    if scope in NAMED_SCOPES or scope in _WILDCARDS or _FUNCTION_SCOPE.fullmatch(scope):
        return scope
    raise ValueError(
        f"unknown scope {scope!r}: use {', '.join(NAMED_SCOPES)}, functions:<function name>, "
        "or a wildcard (*, functions:*, files:*)"
    )


class Scope(click.ParamType[str]):
    """A click parameter taking one scope (see :func:`check_scope`)."""

    name = "scope"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        try:
            return check_scope(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SCOPE = Scope()


def format_time(ts: float | None) -> str:
    """A UNIX time as ``YYYY-MM-DD HH:MM`` UTC (empty for ``None``)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, keep: int = 1
) -> None:
    """Print a table whose first ``keep`` columns (ids people copy) never wrap."""
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index < keep)
    for row in rows:
        table.add_row(*row)
    out.print_table(table)


def key_state(record: ApiKeyRecord, now: float | None = None) -> str:
    """``active``, ``revoked``, ``expired`` or ``active until <time>`` (in a grace period)."""
    now = datetime.now(UTC).timestamp() if now is None else now
    if record.revoked_at is not None:
        if now >= record.revoked_at:
            return "revoked"
        return f"active until {format_time(record.revoked_at)} UTC"
    if record.expires_at is not None and now >= record.expires_at:
        return "expired"
    return "active"


def show_keys(title: str, records: Sequence[ApiKeyRecord]) -> None:
    """Print key records as a table."""
    print_table(
        title,
        ["Key ID", "Label", "Scopes", "State", "Created", "Expires", "Last used"],
        [
            [
                r.id,
                escape(r.label),
                escape(", ".join(r.scopes) or "*"),
                key_state(r),
                format_time(r.created_at),
                format_time(r.expires_at),
                format_time(r.last_used_at),
            ]
            for r in records
        ],
    )


def show_issued(issued: IssuedKey) -> None:
    """Print a new key once, with the notice to save it."""
    click.echo(f"API key: {issued.api_key}")
    out.line(f"[bold]{SAVE_NOTICE}[/bold] (key id {issued.record.id})")


def issued_json(issued: IssuedKey) -> dict[str, object]:
    return {"api_key": issued.api_key, "key": issued.record.public()}


tenant_id_option = click.option(
    "--tenant-id", required=True, metavar="ID", help="The tenant, e.g. acme-corp."
)


@main.group()
def key() -> None:
    """Create, list, revoke and rotate tenants' API keys."""


@key.command("create")
@tenant_id_option
@click.option("--label", default="default", show_default=True, help="A name for the key.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=SCOPE,
    metavar="SCOPE",
    help=(
        "Limit the key to a scope (repeatable): tenant:read, usage:read, files:read, "
        "files:write or functions:<name>. None: full access."
    ),
)
@click.option("--expires-in", type=DURATION, default=None, help="e.g. 90d; default: never.")
@url_option
@json_option
@command_errors
def create_key(
    tenant_id: str,
    label: str,
    scopes: tuple[str, ...],
    expires_in: float | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Create another API key for a tenant (printed once)."""
    with target_for(url) as target:
        issued = target.create_key(tenant_id, label=label, scopes=scopes, expires_in=expires_in)
    if as_json:
        out.json(issued_json(issued))
        return
    out.line(f"Created key {issued.record.id} for tenant {escape(tenant_id)}.")
    show_issued(issued)


@key.command("list")
@tenant_id_option
@url_option
@json_option
@command_errors
def list_keys(tenant_id: str, url: str | None, as_json: bool) -> None:
    """List a tenant's keys (never the keys themselves)."""
    with target_for(url) as target:
        records = target.list_keys(tenant_id)
    if as_json:
        out.json({"tenant_id": tenant_id, "keys": [r.public() for r in records]})
        return
    show_keys(f"API keys of {escape(tenant_id)}", records)


@key.command("revoke")
@tenant_id_option
@click.option("--key-id", required=True, metavar="KEY_ID", help="The key to revoke.")
@url_option
@json_option
@command_errors
def revoke_key(tenant_id: str, key_id: str, url: str | None, as_json: bool) -> None:
    """Revoke a key: refused at once by this process, and by running gateways
    within TENANTKIT_AUTH_CACHE_TTL (1 s by default)."""
    with target_for(url) as target:
        record = target.revoke_key(tenant_id, key_id)
    if as_json:
        out.json({"key": record.public()})
        return
    out.line(f"Revoked key {escape(record.id)} of tenant {escape(tenant_id)}.")


@key.command("rotate")
@tenant_id_option
@click.option("--key-id", default=None, metavar="KEY_ID", help="Key to replace (default: all).")
@click.option(
    "--grace",
    type=DURATION,
    default="0s",
    show_default=True,
    help="How long the old key keeps working, e.g. 24h.",
)
@url_option
@json_option
@command_errors
def rotate_key(
    tenant_id: str, key_id: str | None, grace: float, url: str | None, as_json: bool
) -> None:
    """Issue a new key; the old one stops working after the grace period."""
    with target_for(url) as target:
        issued = target.rotate_key(tenant_id, key_id, grace=grace)
    if as_json:
        out.json({**issued_json(issued), "grace": grace})
        return
    when = "now" if grace == 0 else f"in {grace:g}s"
    out.line(f"Rotated keys of tenant {escape(tenant_id)}; old key(s) stop working {when}.")
    show_issued(issued)
