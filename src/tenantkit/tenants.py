"""The tenant lifecycle: create, look up, change tier, suspend, resume, delete.

Every change is one write transaction with its audit entry, and drops the
tenant's cached key verifications in this process, so a suspension or a tier
change applies to the very next request (other processes follow within
``settings.auth_cache_ttl``).

Deleting a tenant removes its records (keys, limiter state, leases, storage
counters), archives its usage under ``<id>~deleted-<seconds>`` (kept for
billing, read by no tenant) and then removes its files; creating a tenant
removes any local files an earlier tenant of the same id left behind (a call
still running when it was deleted may have written some), and that call's
usage, metered later, goes to the archive too. So an id used again starts with
nothing of the old tenant's: no key verifies for it, no limit is carried over,
no usage is shown or counted against its quota, no file is seen.

Example:
    >>> from tenantkit.auth import KeyManager
    >>> from tenantkit.config import get_settings
    >>> from tenantkit.db import open_database
    >>> db = open_database("sqlite:///:memory:")
    >>> tenants = TenantService(db, KeyManager(db, get_settings(signing_key="x" * 32)))
    >>> tenant, issued = tenants.create("acme-corp", "Acme Corporation", "pro")
    >>> tenants.change_tier("acme-corp", "enterprise").tier
    'enterprise'
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tenantkit.auth.keys import IssuedKey, KeyManager
from tenantkit.config import DEFAULT_TIERS, Tier, resolve_tier, validate_tenant_id
from tenantkit.db.base import AuditEntry, Database, Tenant, Transaction
from tenantkit.errors import TenantAlreadyExists, TenantNotFound, ValidationError

__all__ = ["FilesRemover", "TenantService"]


class FilesRemover(Protocol):
    """Removes every file a tenant id holds, e.g. :func:`tenantkit.storage.files_remover`.

    ``leftovers`` is true when called before an id is created (again): the
    tenant is already gone, and a remover may skip that sweep where it is
    costly; false right after a deletion.
    """

    def __call__(self, tenant_id: str, *, leftovers: bool = False) -> object: ...


_FROM_SETTINGS: Any = object()

_NAME_MAX = 200
_EMAIL_MAX = 254
_REASON_MAX = 500
_LIST_MAX = 1000


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("a tenant needs a name")
    name = name.strip()
    if len(name) > _NAME_MAX or not name.isprintable():
        raise ValidationError(f"a tenant name is printable text of at most {_NAME_MAX} characters")
    return name


def _check_email(email: str | None) -> str | None:
    if email is None or email == "":
        return None
    local, at, domain = email.partition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(email) > _EMAIL_MAX
        or any(c.isspace() for c in email)
        or "@" in domain
    ):
        raise ValidationError(f"invalid email address {email!r}")
    return email


def _check_reason(reason: str | None) -> str | None:
    if reason is None or not reason.strip():
        return None
    if len(reason) > _REASON_MAX or not reason.isprintable():
        raise ValidationError(f"a reason is printable text of at most {_REASON_MAX} characters")
    return reason.strip()


class TenantService:
    """Tenants and their lifecycle, over the records database.

    Args:
        db: The records database.
        keys: Mints the first key of a new tenant and holds the verification cache.
        tiers: The tier table tenants are checked against.
        clock: UNIX time source.
        remove_files: Called with a tenant id to remove that tenant's files,
            after the tenant is deleted and before an id is (re)used. By
            default, the storage ``keys.settings`` names, when ``db`` is the
            database those settings name too (local files; the Modal backend
            needs the app name, so pass ``files_remover(settings,
            app_name=...)`` there); ``None``: never.
    """

    def __init__(
        self,
        db: Database,
        keys: KeyManager,
        *,
        tiers: Mapping[str, Tier] = DEFAULT_TIERS,
        clock: Callable[[], float] = time.time,
        remove_files: FilesRemover | None = _FROM_SETTINGS,
    ) -> None:
        self.db = db
        self.keys = keys
        self.tiers = tiers
        self.clock = clock
        if remove_files is _FROM_SETTINGS:
            # Only for the records the settings name: a service over another database
            # (a test's, an in-memory one) must not touch the settings' tenant files.
            remove_files = None
            if db.url == keys.settings.resolved_database_url():
                from tenantkit.storage import files_remover

                remove_files = files_remover(keys.settings)
        self.remove_files: FilesRemover | None = remove_files

    def create(
        self,
        tenant_id: str,
        name: str,
        tier: str,
        email: str | None = None,
        *,
        actor: str = "cli",
    ) -> tuple[Tenant, IssuedKey]:
        """Create a tenant and its first API key, in one transaction.

        Files left under the id by a deleted tenant are removed first (with
        the local storage backend).

        Raises:
            InvalidTenantId, UnknownTier, ValidationError, TenantAlreadyExists,
            StorageUnavailable (leftover files could not be removed).
        """
        validate_tenant_id(tenant_id)
        resolve_tier(tier, self.tiers)
        name = _check_name(name)
        email = _check_email(email)
        now = self.clock()
        tenant = Tenant(
            id=tenant_id,
            name=name,
            tier=tier,
            status="active",
            created_at=now,
            updated_at=now,
            email=email,
        )
        with self.db.transaction() as tx:
            if tx.get_tenant(tenant_id) is not None:
                raise TenantAlreadyExists(f"tenant {tenant_id!r} already exists")
            if self.remove_files is not None:
                self.remove_files(tenant_id, leftovers=True)  # what a deleted tenant left
            tx.create_tenant(tenant)
            issued = self.keys.mint_in(tx, tenant_id, actor=actor)
            self._audit(tx, actor, "tenant.create", tenant_id, tier=tier)
        return tenant, issued

    def get(self, tenant_id: str) -> Tenant:
        """The tenant's record.

        Raises:
            InvalidTenantId, TenantNotFound.
        """
        validate_tenant_id(tenant_id)
        with self.db.transaction(write=False) as tx:
            tenant = tx.get_tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(f"tenant {tenant_id!r} not found")
        return tenant

    def list(self, *, limit: int = 100, after: str | None = None) -> builtins.list[Tenant]:
        """Tenants ordered by id, ``limit`` (1-1000) at a time, after the id ``after``."""
        if not 1 <= limit <= _LIST_MAX:
            raise ValidationError(f"limit must be between 1 and {_LIST_MAX}")
        with self.db.transaction(write=False) as tx:
            return tx.list_tenants(limit=limit, after=after)

    def count(self) -> int:
        """How many tenants exist."""
        with self.db.transaction(write=False) as tx:
            return tx.count_tenants()

    def change_tier(self, tenant_id: str, tier: str, *, actor: str = "cli") -> Tenant:
        """Move a tenant to another tier; its keys keep working, with the new limits.

        Raises:
            UnknownTier, TenantNotFound.
        """
        validate_tenant_id(tenant_id)
        resolve_tier(tier, self.tiers)
        return self._update(tenant_id, actor, "tenant.tier", {"tier": tier}, "tier")

    def suspend(self, tenant_id: str, reason: str | None = None, *, actor: str = "cli") -> Tenant:
        """Suspend a tenant: its keys are refused (403) until :meth:`resume`."""
        validate_tenant_id(tenant_id)
        changes = {"status": "suspended", "suspended_reason": _check_reason(reason)}
        return self._update(tenant_id, actor, "tenant.suspend", changes, "status")

    def resume(self, tenant_id: str, *, actor: str = "cli") -> Tenant:
        """Make a suspended tenant active again."""
        validate_tenant_id(tenant_id)
        changes = {"status": "active", "suspended_reason": None}
        return self._update(tenant_id, actor, "tenant.resume", changes, "status")

    def delete(self, tenant_id: str, *, actor: str = "cli") -> None:
        """Delete a tenant with its keys, limiter state, leases and files.

        The records go first, in one transaction, so no key of the tenant
        verifies any more; its usage history is archived in that transaction
        under ``tombstone_id(tenant_id, now)`` (billing exports keep it; a new
        tenant of the same id never sees it); then its files are removed.

        Raises:
            TenantNotFound.
            StorageUnavailable: the records are gone but some files could not
                be removed (they are removed when the id is created again).
        """
        validate_tenant_id(tenant_id)
        try:
            with self.db.transaction() as tx:
                if not tx.delete_tenant(tenant_id, now=self.clock()):
                    raise TenantNotFound(f"tenant {tenant_id!r} not found")
                self._audit(tx, actor, "tenant.delete", tenant_id)
        finally:
            self.keys.invalidate(tenant_id)
        if self.remove_files is not None:
            self.remove_files(tenant_id)

    def tier_of(self, tenant: Tenant) -> Tier:
        """The tenant's tier from this service's tier table.

        Raises:
            UnknownTier: the tenant's tier is no longer in the table.
        """
        return resolve_tier(tenant.tier, self.tiers)

    def _update(
        self, tenant_id: str, actor: str, action: str, changes: dict[str, Any], shown: str
    ) -> Tenant:
        try:
            with self.db.transaction() as tx:
                before = tx.get_tenant(tenant_id)
                if before is None:
                    raise TenantNotFound(f"tenant {tenant_id!r} not found")
                tenant = tx.update_tenant(tenant_id, now=self.clock(), **changes)
                detail = {"from": getattr(before, shown), "to": getattr(tenant, shown)}
                if changes.get("suspended_reason"):
                    detail["reason"] = changes["suspended_reason"]
                self._audit(tx, actor, action, tenant_id, **detail)
        finally:
            self.keys.invalidate(tenant_id)
        return tenant

    def _audit(
        self, tx: Transaction, actor: str, action: str, tenant_id: str | None, **detail: Any
    ) -> None:
        tx.audit(AuditEntry.new(self.clock(), actor, action, tenant_id, **detail))
