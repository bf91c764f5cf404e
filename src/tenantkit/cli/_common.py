"""Shared plumbing for CLI commands: output, errors, options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

from tenantkit.errors import TenantKitError

__all__ = [
    "Output",
    "command_errors",
    "json_option",
    "main",
    "out",
]

P = ParamSpec("P")
R = TypeVar("R")


class Output:
    """Prints for people (rich) or machines (one JSON object)."""

    def __init__(self) -> None:
        self.console = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        self.console.print(table)

    def line(self, text: str) -> None:
        self.console.print(text)


out = Output()


def json_option(fn: Callable[P, R]) -> Callable[P, R]:
    """Add ``--json`` (print one JSON object instead of tables)."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.obj and isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
            return True
        ctx = ctx.parent
    return False


def command_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn tenantkit errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TenantKitError as exc:
            if _debug():
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="tenantkit")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """tenantkit: multi-tenant SaaS APIs from plain Python functions."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
