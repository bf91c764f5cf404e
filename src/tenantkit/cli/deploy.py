"""``tenantkit deploy APP.py``: deploy to Modal, or show the plan with ``--dry-run``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tenantkit.cli._common import command_errors, json_option, load_user_app, main, out

if TYPE_CHECKING:
    from tenantkit.deploy import DeployOptions, DeployPlan
    from tenantkit.workers import TenantApp

__all__ = ["deploy"]


def _options(**values: Any) -> DeployOptions:
    from tenantkit.deploy import DEFAULT_SECRET_NAME, DeployOptions

    return DeployOptions(
        database=values["database"],
        secret_name=values["secret"] if values["secret"] is not None else DEFAULT_SECRET_NAME,
        environment=values["env"],
        gateway_min_containers=values["min_containers"],
        gateway_max_containers=values["max_containers"],
        gateway_scaledown_window=values["scaledown_window"],
        gateway_concurrency=values["concurrency"],
        gateway_timeout=values["gateway_timeout"],
        commit_interval=values["commit_interval"],
        db_volume=values["db_volume"],
        source_dir=values["source_dir"],
    )


def _text(value: Any) -> str:
    """A cell for a rich table: ``-`` for nothing, markup escaped."""
    from rich.markup import escape

    if value is None:
        return "-"
    if isinstance(value, tuple | list):
        return escape(", ".join(str(v) for v in value)) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return escape(str(value))


def _short_route(route: str) -> str:
    return route.removeprefix("POST ").split(" (", 1)[0]


def _print_plan(deploy_plan: DeployPlan) -> None:
    env = f" (environment {deploy_plan.environment})" if deploy_plan.environment else ""
    title = _text(f"Deploy plan for Modal App {deploy_plan.app_name!r}{env}")
    out.line(f"[bold]{title}[/bold]")
    out.table(
        "Functions",
        ["Function", "GPU", "Timeout (s)", "Memory (MiB)", "CPU", "Retries", "Secrets", "Routes"],
        [
            [
                _text(f.name) + ("" if f.tiers is None else f"\n(tiers: {_text(f.tiers)})"),
                "-" if f.gpu_type is None else f"{f.gpu_type} x{f.gpu_count}",
                f.timeout,
                _text(f.memory),
                _text(f.cpu),
                f.retries,
                _text(f.secrets),
                _text("\n".join(_short_route(r) for r in f.routes)),
            ]
            for f in deploy_plan.functions
        ],
    )
    gateway = deploy_plan.gateway
    out.table(
        "Gateway (FastAPI under @modal.asgi_app)",
        ["Setting", "Value"],
        [
            ["Modal function", gateway.modal_name],
            ["Concurrent requests per container", gateway.concurrency],
            ["min_containers", gateway.min_containers],
            ["max_containers", _text(gateway.max_containers)],
            ["scaledown_window (s)", gateway.scaledown_window],
            ["Request timeout (s)", gateway.timeout],
            ["Secrets", _text(gateway.secrets)],
            ["Volumes", _text([f"{m} <- {v}" for m, v in gateway.volumes.items()])],
        ],
    )
    database = deploy_plan.database
    out.table(
        f"Database: {database.mode} mode",
        ["Setting", "Value"],
        [
            ["Records", _text(database.url)],
            ["Volume", _text(database.volume)],
            ["Snapshot interval (s)", _text(database.commit_interval)],
            ["Deploy strategy", database.strategy],
            ["Durability", database.durability],
        ],
    )
    out.table(
        "Volumes",
        ["Name", "Mount", "Used by", "Holds"],
        [[_text(v.name), _text(v.mount), v.used_by, v.purpose] for v in deploy_plan.volumes],
    )
    out.table(
        "Secrets (must exist on Modal: tenantkit secret create)",
        ["Name", "Attached to"],
        [
            [
                _text(name),
                ", ".join(
                    ([deploy_plan.gateway.modal_name] if name in gateway.secrets else [])
                    + [f.name for f in deploy_plan.functions if name in f.secrets]
                )
                or "-",
            ]
            for name in deploy_plan.secrets
        ],
    )
    image = deploy_plan.image
    out.table(
        "Image",
        ["Setting", "Value"],
        [
            ["Base", f"debian_slim, Python {image.python_version}"],
            ["tenantkit dependencies", f"{len(image.packages)} pinned packages"],
            ["App requirements", _text(image.requirements)],
            ["Source", f"{_text(image.source_dir)} -> {image.remote_source_dir}"],
            ["App", _text(image.app_ref)],
        ],
    )
    for message in deploy_plan.warnings:
        out.line(f"[yellow]Warning:[/yellow] {_text(message)}")
    for message in deploy_plan.errors:
        out.line(f"[red]Error:[/red] {_text(message)}")


def _load(app_ref: str) -> TenantApp:
    """Load the app; an exception raised by the user's file becomes one line."""
    from tenantkit.errors import DeployError

    return load_user_app(app_ref, error=DeployError)


def _next_command(url: str) -> str:
    return "\n".join(
        [
            f"export TENANTKIT_URL={shlex.quote(url)}",
            "export TENANTKIT_ADMIN_KEY=...   # printed by `tenantkit secret create`",
            "tenantkit tenant create --tenant-id acme-corp --name "
            + shlex.quote("Acme Corporation")
            + " --tier pro --email admin@acme.com",
        ]
    )


@main.command()
@click.argument("app_ref", metavar="APP.py[::NAME]")
@click.option("--dry-run", is_flag=True, help="Check and print the plan; upload nothing.")
@click.option(
    "--database",
    type=click.Choice(["starter", "production"]),
    default=None,
    help="starter: SQLite on a Volume, one gateway container. production: PostgreSQL "
    "from the Modal Secret. Default: production if TENANTKIT_DATABASE_URL is PostgreSQL.",
)
@click.option("--secret", default=None, help="Modal Secret with the keys [default: tenantkit].")
@click.option("--env", default=None, help="Modal environment.")
@click.option("--min-containers", default=0, show_default=True, type=int)
@click.option("--max-containers", default=None, type=int, help="Gateway containers at most.")
@click.option("--scaledown-window", default=300, show_default=True, type=int)
@click.option(
    "--concurrency", default=100, show_default=True, type=int, help="Requests per container."
)
@click.option("--gateway-timeout", default=None, type=int, help="Seconds per gateway request.")
@click.option(
    "--commit-interval",
    default=5.0,
    show_default=True,
    type=float,
    help="Starter mode: seconds between database snapshots.",
)
@click.option("--db-volume", default=None, help="Starter mode: Volume for the database.")
@click.option(
    "--source-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder uploaded with the app [default: the app file's folder].",
)
@json_option
@command_errors
def deploy(app_ref: str, dry_run: bool, as_json: bool, **values: Any) -> None:
    """Deploy APP.py to Modal as one app: the gateway and a function per tenant function."""
    from tenantkit.config import get_settings
    from tenantkit.deploy import deploy as deploy_to_modal
    from tenantkit.deploy import plan, require_modal_credentials

    if not dry_run:
        require_modal_credentials()
    options = _options(**values)
    app = _load(app_ref)
    settings = get_settings()
    deploy_plan = plan(app, settings, options)
    if dry_run:
        if as_json:
            out.json(deploy_plan.to_dict())
        else:
            _print_plan(deploy_plan)
        if not deploy_plan.ok:
            raise SystemExit(1)
        return
    deploy_plan.raise_for_errors()
    for message in deploy_plan.warnings:
        out.err.print(f"Warning: {_text(message)}")
    result = deploy_to_modal(app, settings, options, show_output=not as_json)
    if as_json:
        out.json(
            {
                "app": result.app_name,
                "gateway_url": result.gateway_url,
                "docs_url": result.docs_url,
                "app_id": result.app_id,
                "database": deploy_plan.database.mode,
            }
        )
        return
    out.line(f"Gateway: {_text(result.gateway_url)}")
    out.line(f"API docs: {_text(result.docs_url)}")
    out.line(
        f"Database: {deploy_plan.database.mode} mode. {_text(deploy_plan.database.durability)}"
    )
    out.line("Next, create a tenant on the deployment:")
    out.line(_text(_next_command(result.gateway_url)))
