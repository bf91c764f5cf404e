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
    "local_root",
    "normalize_path",
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
