"""The actions behind ``tenantkit deploy`` and ``tenantkit secret create``.

Both need a Modal account. Credentials are checked offline first, from
Modal's own configuration (``~/.modal.toml`` or ``MODAL_TOKEN_ID`` /
``MODAL_TOKEN_SECRET``), so a machine without them fails at once with one
message naming ``modal token new``, before any network call.
"""

from __future__ import annotations

import contextlib
import secrets as token_source
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tenantkit.deploy.options import DEFAULT_SECRET_NAME, DeployOptions
from tenantkit.deploy.plan import valid_modal_name
from tenantkit.errors import DeployError

if TYPE_CHECKING:
    from tenantkit.config import Settings
    from tenantkit.workers import TenantApp

__all__ = [
    "NO_CREDENTIALS",
    "CreatedSecret",
    "DeployResult",
    "create_secret",
    "deploy",
    "has_modal_credentials",
    "require_modal_credentials",
]

NO_CREDENTIALS = (
    "no Modal credentials found: run `modal token new` (or set MODAL_TOKEN_ID and "
    "MODAL_TOKEN_SECRET), then run this command again"
)

ADMIN_KEY_PREFIX = "tka_"


def has_modal_credentials() -> bool:
    """Whether Modal's configuration holds credentials. Offline.

    Raises:
        DeployError: if Modal's configuration file cannot be read.
    """
    try:
        from modal.config import config

        token = config.get("token_id") and config.get("token_secret")
        oauth = (
            config.get("oauth_refresh_token")
            and config.get("oauth_client_id")
            and config.get("oauth_client_secret")
        )
    except Exception as exc:
        raise DeployError(f"cannot read Modal's configuration: {exc}".strip()) from exc
    return bool(token or oauth)


def require_modal_credentials() -> None:
    """Raise at once if there are no Modal credentials.

    Raises:
        DeployError: with :data:`NO_CREDENTIALS`.
    """
    if not has_modal_credentials():
        raise DeployError(NO_CREDENTIALS)


@dataclass(frozen=True, slots=True)
class DeployResult:
    """What a deploy produced.

    Attributes:
        app_name: The Modal App.
        gateway_url: The gateway's URL.
        docs_url: Its OpenAPI docs.
        app_id: The deployed App's id (``ap-...``).
    """

    app_name: str
    gateway_url: str
    docs_url: str
    app_id: str | None = None


def _modal_failure(action: str, exc: Exception) -> DeployError:
    from modal.exception import AuthError

    if isinstance(exc, AuthError):
        return DeployError(
            f"Modal rejected the credentials while {action}: run `modal token new`, then try again"
        )
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DeployError(f"Modal failed while {action}: {detail}")


def deploy(
    app: TenantApp,
    settings: Settings,
    options: DeployOptions | None = None,
    *,
    show_output: bool = True,
) -> DeployResult:
    """Deploy ``app`` to Modal, with Modal's build output shown (``show_output``).

    Starter mode deploys with the ``recreate`` strategy (the old gateway
    container stops before the new one starts, so two never write the SQLite
    file at once); production mode with ``rolling``.

    Raises:
        DeployError: no credentials, plan errors, or Modal refusing the deploy.
    """
    require_modal_credentials()
    import modal

    from tenantkit.deploy.modal_app import build_modal_deployment

    options = options or DeployOptions()
    deployment = build_modal_deployment(app, settings, options)
    try:
        with modal.enable_output() if show_output else contextlib.nullcontext():
            deployment.app.deploy(
                name=deployment.plan.app_name,
                environment_name=options.environment,
                strategy=deployment.plan.database.strategy,
            )
        url = deployment.gateway.get_web_url()
    except Exception as exc:  # Modal, gRPC and socket errors alike: one line, no traceback
        raise _modal_failure("deploying", exc) from exc
    if not url:
        raise DeployError("the deploy finished but Modal gave no URL for the gateway")
    url = url.rstrip("/")
    return DeployResult(
        app_name=deployment.plan.app_name,
        gateway_url=url,
        docs_url=f"{url}/docs",
        app_id=deployment.app.app_id,
    )


@dataclass(frozen=True, slots=True)
class CreatedSecret:
    """A Modal Secret made by :func:`create_secret`.

    Attributes:
        name: The Secret's name.
        admin_key: The admin key stored in it (shown once, never again).
        keys: The environment variable names stored.
    """

    name: str
    admin_key: str
    keys: tuple[str, ...]


def secret_values(
    *, algorithm: Literal["HS256", "EdDSA"] = "HS256", database_url: str | None = None
) -> dict[str, str]:
    """Fresh values for the tenantkit Secret: a signing key and an admin key.

    Example:
        >>> values = secret_values()
        >>> sorted(values)
        ['TENANTKIT_ADMIN_KEY', 'TENANTKIT_JWT_ALGORITHM', 'TENANTKIT_SIGNING_KEY']
        >>> values["TENANTKIT_ADMIN_KEY"].startswith("tka_")
        True
    """
    from tenantkit.auth.signing import generate_ed25519_pem

    signing = token_source.token_urlsafe(48) if algorithm == "HS256" else generate_ed25519_pem()
    values = {
        "TENANTKIT_SIGNING_KEY": signing,
        "TENANTKIT_JWT_ALGORITHM": algorithm,
        "TENANTKIT_ADMIN_KEY": ADMIN_KEY_PREFIX + token_source.token_urlsafe(32),
    }
    if database_url is not None:
        if not database_url.startswith(("postgresql://", "postgres://")):
            raise DeployError("the database URL must start with postgresql://")
        values["TENANTKIT_DATABASE_URL"] = database_url
    return values


def create_secret(
    name: str = DEFAULT_SECRET_NAME,
    *,
    environment: str | None = None,
    algorithm: Literal["HS256", "EdDSA"] = "HS256",
    database_url: str | None = None,
) -> CreatedSecret:
    """Generate a signing key and an admin key and store them as a Modal Secret.

    An existing Secret is never replaced: that would change the signing key
    and break every API key issued with it.

    Args:
        name: The Secret's name (``tenantkit deploy --secret`` uses the same).
        environment: Modal environment (``None``: the profile's).
        algorithm: ``HS256`` (shared secret) or ``EdDSA`` (Ed25519 key pair).
        database_url: Production mode: a ``postgresql://`` URL to store too.

    Raises:
        DeployError: no credentials, a bad name or URL, the Secret exists, or
            Modal refusing.
    """
    if not valid_modal_name(name):
        raise DeployError(
            f"invalid secret name {name!r}: Modal names are 1-64 letters, digits, '-', '_' or '.'"
        )
    values = secret_values(algorithm=algorithm, database_url=database_url)
    require_modal_credentials()
    import modal

    try:
        modal.Secret.objects.create(name, values, environment_name=environment)
    except modal.exception.AlreadyExistsError as exc:
        raise DeployError(
            f"Modal Secret {name!r} already exists and was left unchanged (replacing it would "
            "change the signing key and invalidate every API key); to replace it on purpose, "
            f"run `modal secret delete {name}` first"
        ) from exc
    except Exception as exc:  # Modal, gRPC and socket errors alike: one line, no traceback
        raise _modal_failure("creating the secret", exc) from exc
    return CreatedSecret(name=name, admin_key=values["TENANTKIT_ADMIN_KEY"], keys=tuple(values))
