"""How an app is laid out on Modal: database mode, gateway scaling, names.

These are deploy-time choices made on the command line
(``tenantkit deploy --database production --max-containers 4``), not
settings read from the environment: the deployed gateway reads its own
settings from the Modal Secret.

Example:
    >>> DeployOptions().database is None
    True
    >>> DeployOptions(database="starter").gateway_concurrency
    100
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_SECRET_NAME", "DatabaseMode", "DeployOptions"]

DatabaseMode = Literal["starter", "production"]

DEFAULT_SECRET_NAME = "tenantkit"  # noqa: S105 - a name, not a secret


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """Deploy-time choices.

    Attributes:
        database: ``"starter"`` (SQLite on a Modal Volume, one gateway
            container), ``"production"`` (PostgreSQL from the Modal Secret,
            the gateway scales out), or ``None`` to choose from the settings'
            database URL (PostgreSQL -> production, anything else -> starter).
        secret_name: The Modal Secret holding ``TENANTKIT_SIGNING_KEY`` and
            ``TENANTKIT_ADMIN_KEY`` (and ``TENANTKIT_DATABASE_URL`` in
            production), as made by ``tenantkit secret create``.
        environment: Modal environment to deploy into (``None``: the profile's).
        gateway_min_containers: Gateway containers kept warm (``min_containers``).
        gateway_max_containers: Upper bound on gateway containers
            (``max_containers``); starter mode needs 1 (``None`` there means 1).
        gateway_scaledown_window: Seconds an idle gateway container stays up
            (``scaledown_window``, 2 to 3600).
        gateway_concurrency: Requests one gateway container serves at once
            (``@modal.concurrent(max_inputs=...)``).
        gateway_timeout: Seconds one gateway request may take; ``None``: the
            longest function timeout plus a minute.
        commit_interval: Starter mode: seconds between snapshots of the
            SQLite file to the Volume (the most records a hard crash loses).
        db_volume: Starter mode: name of the Volume holding the SQLite file
            (``None``: ``<app name>-db``).
        source_dir: Folder uploaded as the app's source (``None``: the app
            file's folder).
        python_version: Python of the image (``None``: this interpreter's).
    """

    database: DatabaseMode | None = None
    secret_name: str = DEFAULT_SECRET_NAME
    environment: str | None = None
    gateway_min_containers: int = 0
    gateway_max_containers: int | None = None
    gateway_scaledown_window: int = 300
    gateway_concurrency: int = 100
    gateway_timeout: int | None = None
    commit_interval: float = 5.0
    db_volume: str | None = None
    source_dir: Path | None = None
    python_version: str | None = None
