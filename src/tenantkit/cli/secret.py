"""``tenantkit secret create``: the Modal Secret a deployed gateway reads its keys from."""

from __future__ import annotations

import click

from tenantkit.cli._common import command_errors, json_option, main, out

__all__ = ["secret"]


@main.group()
def secret() -> None:
    """Modal Secrets holding tenantkit's keys."""


@secret.command("create")
@click.option("--name", default="tenantkit", show_default=True, help="Name of the Modal Secret.")
@click.option("--env", default=None, help="Modal environment.")
@click.option(
    "--algorithm",
    type=click.Choice(["HS256", "EdDSA"]),
    default="HS256",
    show_default=True,
    help="How API keys are signed.",
)
@click.option(
    "--database-url",
    default=None,
    help="Production mode: the postgresql:// URL the gateway uses, stored in the Secret.",
)
@json_option
@command_errors
def create(
    name: str, env: str | None, algorithm: str, database_url: str | None, as_json: bool
) -> None:
    """Generate a signing key and an admin key and store them as a Modal Secret.

    The admin key is printed once: keep it (TENANTKIT_ADMIN_KEY) to manage
    tenants on the deployment with `--url`.
    """
    from rich.markup import escape

    from tenantkit.deploy import create_secret

    created = create_secret(
        name,
        environment=env,
        algorithm="EdDSA" if algorithm == "EdDSA" else "HS256",
        database_url=database_url,
    )
    if as_json:
        out.json({"name": created.name, "keys": list(created.keys), "admin_key": created.admin_key})
        return
    out.line(f"Created Modal Secret {escape(repr(created.name))} with {', '.join(created.keys)}.")
    out.line("Admin key (shown once; store it now, e.g. in your password manager):")
    out.line(f"  export TENANTKIT_ADMIN_KEY={created.admin_key}")
    out.line(f"Next: tenantkit deploy app.py --secret {escape(created.name)}")
