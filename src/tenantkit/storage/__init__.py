"""Tenants' files: isolated per tenant, bounded by the tier's quotas, metered.

Get a tenant's storage with :func:`storage_for`; tenant functions receive it
as ``ctx.storage``::

    storage = storage_for("acme-corp", tier, settings, db)
    storage.write_json("results/run-1.json", {"status": "processed"})
    storage.read_json("results/run-1.json")

The backend follows ``settings.storage_backend``: ``"local"`` keeps a
directory per tenant under ``<data_dir>/volumes/<tenant_id>``; ``"modal"``
keeps one Modal Volume per tenant (see :func:`volume_name`).

The seed's ``create_volume_manager(tenant_id)`` maps onto this module:

=====================================  ==========================================
seed                                   tenantkit
=====================================  ==========================================
``vm = create_volume_manager(tid)``    ``storage = storage_for(tid, tier, settings, db)``,
                                       or ``ctx.storage`` inside a tenant function,
                                       or :func:`create_volume_manager` (same thing,
                                       tier and settings looked up)
``vm.write_file("r.json", {...})``     ``storage.write_json("r.json", {...})``
                                       (``storage.write_file`` accepts bytes, str or
                                       JSON data, as the seed's did)
``vm.read_file("r.json")``             ``storage.read_bytes`` / ``read_text`` /
                                       ``read_json``
=====================================  ==========================================
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tenantkit.config import Settings, Tier, get_settings, resolve_tier, validate_tenant_id
from tenantkit.errors import ConfigurationError
from tenantkit.storage.base import FileInfo, StagedWrite, StorageBackend
from tenantkit.storage.errors import (
    AbsolutePath,
    BackslashInPath,
    ControlCharacter,
    EmptyPath,
    EmptySegment,
    FileTooLarge,
    LookalikeCharacter,
    NameTooLong,
    NotAFile,
    PathEscapesRoot,
    PathTooLong,
    ReservedName,
    StorageQuotaExceeded,
    StorageUnavailable,
    SymlinkInPath,
)
from tenantkit.storage.local import LocalBackend
from tenantkit.storage.modal_volume import ModalVolumeBackend, volume_name
from tenantkit.storage.paths import normalize_path
from tenantkit.storage.quota import DatabaseLedger, Ledger, MemoryLedger
from tenantkit.storage.tenant_storage import (
    StorageTotals,
    StorageWriter,
    TenantStorage,
    scan_usage,
)

if TYPE_CHECKING:
    from tenantkit.db.base import Database

__all__ = [
    "AbsolutePath",
    "BackslashInPath",
    "ControlCharacter",
    "DatabaseLedger",
    "EmptyPath",
    "EmptySegment",
    "FileInfo",
    "FileTooLarge",
    "FilesRemover",
    "Ledger",
    "LocalBackend",
    "LookalikeCharacter",
    "MemoryLedger",
    "ModalVolumeBackend",
    "NameTooLong",
    "NotAFile",
    "PathEscapesRoot",
    "PathTooLong",
    "ReservedName",
    "StagedWrite",
    "StorageBackend",
    "StorageQuotaExceeded",
    "StorageTotals",
    "StorageUnavailable",
    "StorageWriter",
    "SymlinkInPath",
    "TenantStorage",
    "backend_for",
    "create_volume_manager",
    "files_remover",
    "local_root",
    "normalize_path",
    "remove_tenant_files",
    "scan_usage",
    "storage_for",
    "volume_name",
]


def local_root(settings: Settings, tenant_id: str) -> Path:
    """The directory holding a tenant's files with the local backend."""
    return settings.data_dir / "volumes" / validate_tenant_id(tenant_id)


def backend_for(
    tenant_id: str, settings: Settings, *, app_name: str | None = None
) -> StorageBackend:
    """The backend ``settings.storage_backend`` names, for one tenant.

    Raises:
        ConfigurationError: the Modal backend without ``app_name``.
    """
    validate_tenant_id(tenant_id)
    if settings.storage_backend == "modal":
        if not app_name:
            raise ConfigurationError(
                "the Modal storage backend needs the app name to name each tenant's Volume"
            )
        return ModalVolumeBackend(volume_name(app_name, tenant_id))
    return LocalBackend(local_root(settings, tenant_id))


def storage_for(
    tenant_id: str,
    tier: Tier,
    settings: Settings,
    db: Database | None,
    *,
    app_name: str | None = None,
    clock: Callable[[], float] = time.time,
) -> TenantStorage:
    """A tenant's storage, with quotas from ``tier``.

    Args:
        tenant_id: Whose files.
        tier: The tenant's tier (``storage_bytes``, ``max_files``).
        settings: ``storage_backend`` and ``data_dir`` are read.
        db: The records database: quotas hold across processes and the
            ``storage_bytes``/``storage_files`` gauges are recorded. Without
            one, quotas hold within this process (counted from the files).
        app_name: The app's name; needed by the Modal backend.
        clock: UNIX time source, for the gauges' day.
    """
    backend = backend_for(tenant_id, settings, app_name=app_name)
    ledger: Ledger | None = None
    if db is not None:
        ledger = DatabaseLedger(db, tenant_id, clock=clock)
    return TenantStorage(tenant_id, tier, backend, ledger)


def create_volume_manager(
    tenant_id: str,
    *,
    tier: Tier | str = "free",
    settings: Settings | None = None,
    db: Database | None = None,
    app_name: str | None = None,
) -> TenantStorage:
    """The seed's ``create_volume_manager(tenant_id)``: a tenant's storage.

    Prefer ``ctx.storage`` inside tenant functions, or :func:`storage_for`.
    """
    settings = settings or get_settings()
    if isinstance(tier, str):
        tier = resolve_tier(tier)
    return storage_for(tenant_id, tier, settings, db, app_name=app_name)


logger = logging.getLogger("tenantkit.storage")


def _remove_local_root(root: Path) -> StorageTotals:
    """Remove a tenant's whole directory, links and foreign entries included.

    The directory is first renamed to a name no tenant id can take (it starts
    with ``.``), in one atomic step, so nothing is left under the tenant's
    name even if the removal below is interrupted; the renamed tree is then
    removed without following links (``shutil.rmtree`` works on descriptors
    where the platform allows).
    """
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        root.unlink()  # a link (or a file) where the tenant's root should be
        return StorageTotals(0, 0)
    if not root.exists():
        return StorageTotals(0, 0)
    removed_bytes, removed_files = scan_usage(LocalBackend(root))
    grave = root.with_name(f".deleted-{root.name}-{secrets.token_hex(6)}")
    try:
        os.rename(root, grave)
    except FileNotFoundError:  # removed meanwhile
        return StorageTotals(0, 0)
    try:
        shutil.rmtree(grave)
    except OSError as exc:
        # The server's path goes to the log only: this message can reach an API client.
        logger.error("could not remove %s (files of a deleted tenant): %s", grave, exc)
        raise StorageUnavailable(
            f"the files of tenant {root.name!r} could not all be removed; they are out of its "
            "reach, and the server log names the folder to remove"
        ) from exc
    return StorageTotals(removed_bytes, removed_files)


def remove_tenant_files(
    tenant_id: str, settings: Settings, *, app_name: str | None = None
) -> StorageTotals:
    """Remove every file a tenant id holds in storage (when the tenant is deleted).

    With the local backend the tenant's whole directory goes, whatever it
    holds; with the Modal backend every file of the tenant's Volume is
    removed (the Volume itself stays, empty). No quota counters are written:
    the tenant's records are gone already.

    Returns:
        The bytes and files removed (files tenantkit can name; the local
        backend also removes anything else it finds).

    Raises:
        ConfigurationError: the Modal backend without ``app_name``.
        StorageUnavailable: the files could not all be removed.
    """
    validate_tenant_id(tenant_id)
    if settings.storage_backend == "local":
        return _remove_local_root(local_root(settings, tenant_id))
    backend = backend_for(tenant_id, settings, app_name=app_name)
    # Any tier will do: deleting needs no quota; the ledger is this call's own.
    tier = Tier("removal", 1, 1, 1, 1, 1, 1)
    return TenantStorage(tenant_id, tier, backend).delete_all()


def files_remover(settings: Settings, *, app_name: str | None = None) -> FilesRemover | None:
    """A ``remove_files`` hook for :class:`~tenantkit.tenants.TenantService`.

    Returns ``None`` when the files cannot be found from the settings alone
    (the Modal backend without ``app_name``).
    """
    if settings.storage_backend == "modal" and not app_name:
        return None
    return FilesRemover(settings, app_name=app_name)


class FilesRemover:
    """Removes a tenant id's files: :func:`remove_tenant_files` as a hook.

    Called with ``leftovers=True`` before an id is created (again), it sweeps
    what a call still running at the deletion may have written. Only the
    local backend does that sweep, since it costs a directory check; on
    Modal it would cost network calls (and create the Volume) on every
    tenant creation, so there only the removal at deletion happens.
    """

    def __init__(self, settings: Settings, *, app_name: str | None = None) -> None:
        self.settings = settings
        self.app_name = app_name

    def __call__(self, tenant_id: str, *, leftovers: bool = False) -> StorageTotals:
        if leftovers and self.settings.storage_backend != "local":
            return StorageTotals(0, 0)
        return remove_tenant_files(tenant_id, self.settings, app_name=self.app_name)

    def __repr__(self) -> str:
        return f"FilesRemover({self.settings.storage_backend!r}, app_name={self.app_name!r})"
