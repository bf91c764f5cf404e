"""What runs inside the Modal containers: the worker entry and the gateway.

Both are reached through small closures registered on the ``modal.App`` by
:func:`tenantkit.deploy.build_modal_app` (``serialized=True``); the closures
hold only picklable values (an :class:`~tenantkit.deploy.source.AppSource`,
names, a :class:`GatewayConfig`) and call the functions here, which load
the user's app from the uploaded source on first use.

Only JSON crosses between the gateway and a worker: the gateway sends the
validated arguments as JSON-ready data and the worker validates them again
into the function's own types, and the worker returns the value as JSON-ready
data in the :class:`~tenantkit.workers.Envelope`. Neither side has to import
the other's user modules under the same name to unpickle them.

Starter mode keeps the SQLite file on the gateway container's own disk and
copies it to the Volume with SQLite's online backup (:class:`SQLiteSnapshots`):
a consistent file every ``commit_interval`` seconds and when the container
stops, never a half-written one, and no WAL file on a network filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from tenantkit.deploy.options import DatabaseMode
from tenantkit.deploy.plan import DB_MOUNT, LIVE_DB_PATH
from tenantkit.errors import DeployError, FunctionNotFound

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tenantkit.config import Settings
    from tenantkit.deploy.source import AppSource
    from tenantkit.workers import Envelope, Executor, TenantContext

__all__ = [
    "SNAPSHOT_NAME",
    "GatewayConfig",
    "SQLiteSnapshots",
    "gateway_app",
    "jsonable",
    "run_worker",
    "storage_change",
]

logger = logging.getLogger("tenantkit.deploy")

#: File name of the SQLite snapshot on the starter-mode Volume.
SNAPSHOT_NAME = "tenantkit.db"


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data (pydantic models, dataclasses, dates...)."""
    return to_jsonable_python(value, fallback=repr)


def run_worker(
    source: AppSource,
    name: str,
    arguments: dict[str, Any],
    ctx: TenantContext,
    *,
    gpu_type: str | None = None,
    gpu_count: int = 0,
) -> Envelope:
    """Run one call of tenant function ``name`` here and measure it.

    This is the body of every worker Modal Function. The compute seconds are
    measured in this container by :func:`tenantkit.workers.run_in_envelope`
    around the user's function alone. Files the call wrote through
    ``ctx.storage`` are counted in this container; their net change comes
    back as ``envelope.storage_change`` and the gateway applies it.

    Args:
        source: The app.
        name: The tenant function.
        arguments: JSON-ready arguments (validated again here).
        ctx: The caller's context.
        gpu_type: GPU this container holds.
        gpu_count: How many.

    Raises:
        FunctionNotFound: if the app has no function ``name``.
    """
    from tenantkit.workers import Envelope, InvalidArguments, run_in_envelope
    from tenantkit.workers.executor import caller_problem

    function = source.load().get(name)
    if function is None:
        raise FunctionNotFound(f"no tenant function {name!r} in the deployed app")
    try:
        validated = function.validate(arguments)
    except InvalidArguments as exc:
        logger.warning("arguments for %r failed validation in the worker", name)
        return Envelope(
            error=type(exc).__name__,
            problem=caller_problem(exc),
            gpu_type=gpu_type,
            gpu_count=gpu_count,
        )
    envelope = run_in_envelope(function, validated, ctx, gpu_type=gpu_type, gpu_count=gpu_count)
    if envelope.error is None:
        envelope.value = jsonable(envelope.value)
    envelope.storage_change = storage_change(ctx)
    return envelope


def storage_change(ctx: TenantContext) -> tuple[int, int] | None:
    """The net change the call made to the tenant's files, as this container
    counted it (``ctx.storage`` arrived unpickled, on a ledger of its own),
    for the gateway to add to the records database; ``None`` if nothing changed
    or the storage counts in the records database itself."""
    storage = ctx.storage
    unshared = getattr(storage, "unshared_change", None)
    if unshared is None:
        return None
    try:
        delta_bytes, delta_files = unshared()
    except Exception:
        logger.exception("could not read the storage change of request %s", ctx.request_id)
        return None
    if delta_bytes == 0 and delta_files == 0:
        return None
    return int(delta_bytes), int(delta_files)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What the gateway container needs to know about the deployment.

    Attributes:
        app_name: The Modal App (to look the workers up).
        environment: Modal environment (``None``: the default).
        mode: Database mode.
        secret_name: The Modal Secret with the keys (named in errors).
        db_volume: Starter: the Volume holding the SQLite snapshot.
        commit_interval: Starter: seconds between snapshots.
        db_mount: Starter: where that Volume is mounted.
        live_db_path: Starter: the live SQLite file on the container's disk.
    """

    app_name: str
    environment: str | None
    mode: DatabaseMode
    secret_name: str
    db_volume: str | None = None
    commit_interval: float = 5.0
    db_mount: str = DB_MOUNT
    live_db_path: str = LIVE_DB_PATH


class SQLiteSnapshots:
    """Keeps a consistent copy of a live SQLite file in a (Volume) folder.

    Args:
        live: The SQLite file the gateway writes.
        stored: The copy on the Volume.
        interval: Seconds between snapshots while running.
        commit: Awaited after each snapshot (``volume.commit``); ``None``
            where there is nothing to commit (tests, local folders).
    """

    def __init__(
        self,
        live: Path,
        stored: Path,
        *,
        interval: float = 5.0,
        commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.live = live
        self.stored = stored
        self.interval = interval
        self._commit = commit
        self._watch: sqlite3.Connection | None = None
        self._version: int | None = None
        self.snapshots = 0

    def restore(self) -> bool:
        """Copy the stored snapshot over the live file, if there is one.

        Returns:
            Whether a snapshot was restored.
        """
        self.live.parent.mkdir(parents=True, exist_ok=True)
        if not self.stored.exists():
            return False
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.live}{suffix}")
        staging = self.live.with_name(self.live.name + ".restore")
        source = sqlite3.connect(f"file:{self.stored}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(staging)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        os.chmod(staging, 0o600)  # records hold key hashes: private, as the live file
        os.replace(staging, self.live)
        logger.info("restored the records database from %s", self.stored)
        return True

    def _changed(self) -> bool:
        if self._watch is None:
            self._watch = sqlite3.connect(self.live, check_same_thread=False)
        (version,) = self._watch.execute("PRAGMA data_version").fetchone()
        changed = self._version is None or version != self._version
        self._version = int(version)
        return changed

    def snapshot(self, *, force: bool = False) -> bool:
        """Write a consistent copy of the live file next to ``stored``, then
        rename it over ``stored`` (readers see the old copy or the new).

        Args:
            force: Copy even if nothing changed since the last snapshot.

        Returns:
            Whether a copy was written.
        """
        if not self.live.exists():
            return False
        if not self._changed() and not force:
            return False
        self.stored.parent.mkdir(parents=True, exist_ok=True)
        staging = self.stored.with_name(f".{self.stored.name}.partial")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        source = sqlite3.connect(self.live)
        try:
            target = sqlite3.connect(staging)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        finally:
            source.close()
        os.chmod(staging, 0o600)
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, self.stored)
        self.snapshots += 1
        return True

    async def persist(self, *, force: bool = False) -> bool:
        """Snapshot (in a thread) and commit the Volume if anything was written."""
        written = await asyncio.to_thread(self.snapshot, force=force)
        if written and self._commit is not None:
            await self._commit()
        return written

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Snapshot every ``interval`` seconds inside the block, and once more
        (forced) when it exits."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.persist()
                except Exception:
                    logger.exception("snapshot of the records database failed")

        task = asyncio.create_task(loop(), name="tenantkit-sqlite-snapshots")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await self.persist(force=True)
            finally:
                self.close()

    def close(self) -> None:
        """Close the watching connection."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None


def _volume_commit(name: str, environment: str | None) -> Callable[[], Awaitable[None]]:
    import modal

    volume = modal.Volume.from_name(name, environment_name=environment)

    async def commit() -> None:
        await asyncio.to_thread(volume.commit)

    return commit


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def gateway_app(
    source: AppSource,
    config: GatewayConfig,
    *,
    executor: Executor | None = None,
    commit: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the gateway's ASGI app for a container (the body of the
    ``@modal.asgi_app()`` function).

    Starter mode restores the SQLite snapshot from the Volume before the
    database is opened, and snapshots it while serving and at shutdown
    (after the usage meter's final flush). Production mode refuses to start
    without a PostgreSQL ``TENANTKIT_DATABASE_URL``.

    Args:
        source: The app.
        config: The deployment's gateway settings.
        executor: Where calls run (default: a :class:`ModalExecutor` calling
            the deployed workers).
        commit: Starter mode: what commits the Volume (default:
            ``modal.Volume.from_name(config.db_volume).commit``).

    Raises:
        DeployError: no signing key, or production mode without a PostgreSQL URL.
    """
    from tenantkit.config import get_settings
    from tenantkit.deploy.executor import ModalExecutor
    from tenantkit.gateway import create_gateway

    overrides: dict[str, Any] = {"storage_backend": "modal"}
    snapshots: SQLiteSnapshots | None = None
    if config.mode == "starter":
        if config.db_volume is None:
            raise DeployError("starter mode needs a database Volume")
        snapshots = SQLiteSnapshots(
            Path(config.live_db_path),
            Path(config.db_mount) / SNAPSHOT_NAME,
            interval=config.commit_interval,
            commit=commit or _volume_commit(config.db_volume, config.environment),
        )
        snapshots.restore()
        overrides["database_url"] = f"sqlite:///{config.live_db_path}"
    settings = get_settings(**overrides)
    if settings.signing_key is None or not settings.signing_key.get_secret_value().strip():
        raise DeployError(
            f"the gateway needs TENANTKIT_SIGNING_KEY from Modal Secret {config.secret_name!r} "
            "(tenantkit secret create); a key generated in a container would be lost with it"
        )
    if config.mode == "production" and not _is_postgres(settings.resolved_database_url()):
        raise DeployError(
            "production mode needs TENANTKIT_DATABASE_URL=postgresql://... in Modal Secret "
            f"{config.secret_name!r} (tenantkit secret create --database-url ...)"
        )
    if executor is None:
        executor = ModalExecutor(config.app_name, environment_name=config.environment)
    app = source.load()
    api = create_gateway(app, settings, executor=executor)
    _name_tenant_volumes(api, app.name, settings)
    if snapshots is not None:
        _add_snapshots(api, snapshots)
    return api


def _name_tenant_volumes(api: FastAPI, app_name: str, settings: Settings) -> None:
    """Give the tenant service's file removal on delete the app name the Modal
    backend needs to name each tenant's Volume (the gateway's storage factory
    passes it already)."""
    from tenantkit.storage import files_remover

    services = api.state.tenantkit
    services.tenants.remove_files = files_remover(settings, app_name=app_name)


def _add_snapshots(api: FastAPI, snapshots: SQLiteSnapshots) -> None:
    inner = api.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with snapshots.running(), inner(app) as state:
            yield state

    api.router.lifespan_context = lifespan
