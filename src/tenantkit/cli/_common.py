"""Shared plumbing for CLI commands: output, errors, options, loading the app.

Every error a person sees is one line on stderr: ``Error: ...`` and exit
code 1 for tenantkit's errors (:func:`command_errors`), exit code 2 for a
usage error (a missing option, a bad value: :class:`TenantKitGroup`), with a
traceback only under ``--debug``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table

from tenantkit.errors import ConfigurationError, TenantKitError

if TYPE_CHECKING:
    from tenantkit.workers import TenantApp

__all__ = [
    "Output",
    "TenantKitGroup",
    "command_errors",
    "json_option",
    "load_user_app",
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
        self.print_table(table)

    def print_table(self, table: Table) -> None:
        """Print ``table`` without cutting any value short.

        On a terminal a value too wide for its column folds onto more lines;
        into a pipe or a file the table is as wide as its values need.
        """
        for column in table.columns:
            column.overflow = "fold"
        if self.console.is_terminal:
            self.console.print(table)
            return
        wide = Console(
            file=self.console.file, width=_UNBOUNDED_WIDTH, highlight=False, soft_wrap=True
        )
        wide.print(table)

    def line(self, text: str) -> None:
        self.console.print(text)


_UNBOUNDED_WIDTH = 100_000
"""Console width for tables printed into a pipe or a file (no terminal to fit)."""

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


def load_user_app(app_ref: str, *, error: type[TenantKitError] = ConfigurationError) -> TenantApp:
    """Import the app; an exception raised by the user's file becomes one line.

    Args:
        app_ref: ``APP.py[::NAME]`` or ``package.module::NAME``.
        error: The class of the error raised (the deploy command's is ``DeployError``).

    Raises:
        TenantKitError: ``cannot load APP.py: RuntimeError: boom (run with
            --debug for the traceback)``, chained to the original exception.
    """
    from tenantkit.workers import load_app

    try:
        return load_app(app_ref)
    except TenantKitError:
        raise
    except Exception as exc:
        text = str(exc).strip()
        detail = f": {text.splitlines()[0]}" if text else ""
        raise error(
            f"cannot load {app_ref}: {type(exc).__name__}{detail} "
            "(run with --debug for the traceback)"
        ) from exc


def _one_line(text: str) -> str:
    """``text`` on one line, ending as a sentence does."""
    line = " ".join(text.split())
    return line if line.endswith((".", "!", "?")) else f"{line}."


class TenantKitGroup(click.Group):
    """The ``tenantkit`` group: usage errors print one line, not click's three.

    ``Error: Missing option '--tenant-id'. See 'tenantkit tenant info --help'.``
    and exit code 2; an aborted confirmation prints ``Aborted.`` and exits 1.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # the help text, as click prints it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" See '{exc.ctx.command_path} --help'."
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=TenantKitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="tenantkit")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """tenantkit: multi-tenant SaaS APIs from plain Python functions."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
