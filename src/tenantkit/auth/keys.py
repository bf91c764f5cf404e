"""API keys: mint, verify, revoke, rotate.

A key is the configured prefix (``mt_``) followed by a JWT whose claims are
the tenant (``sub``), the key id (``jti``), the issue time (``iat``), an
optional expiry (``exp``) and the key's ``scopes``; its header names the
signing key (``kid``). No tier, no personal data, no admin flag: the tier and
the tenant's status are read from the database, so an upgrade or a suspension
applies to the same key without a new one: on the next request in the process
that made the change, and within ``settings.auth_cache_ttl`` seconds (1 by
default) in every other process (see the cache below).

:meth:`KeyManager.verify` rejects garbage before any database read (prefix,
length, shape, algorithm, ``kid``, signature, expiry), then checks the key
record and the tenant. The token is bound to its record, not only to its key
id: the record's creation second must equal the token's ``iat`` and the
record's hint must end with the token's last characters, so a key id that
were ever used again (a restored backup, a re-created tenant) does not bring
an old token back to life. Verified keys are cached by the SHA-256 of the key
string for ``settings.auth_cache_ttl`` seconds. A change made through a key
manager (revoke, rotate, suspend, delete, tier change) drops the affected
entries at once in every key manager on the same database *in the same
process*. Other processes (``tenantkit serve --workers N``, other gateway
containers, the CLI changing a database a gateway serves) are not told: they
keep trusting an entry until it is ``auth_cache_ttl`` seconds old, so a
revoked key or a suspended tenant can still be served there for up to that
long (1 s by default; 0 re-reads the records on every request).

Example:
    >>> from tenantkit.config import get_settings
    >>> from tenantkit.db import open_database
    >>> from tenantkit.tenants import TenantService
    >>> db = open_database("sqlite:///:memory:")
    >>> keys = KeyManager(db, get_settings(signing_key="x" * 32))
    >>> tenant, issued = TenantService(db, keys).create("acme-corp", "Acme", "pro")
    >>> keys.verify(issued.api_key).tenant_id
    'acme-corp'
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tenantkit.auth.signing import Keyring, load_keyring
from tenantkit.config import Settings, validate_tenant_id
from tenantkit.db.base import ApiKeyRecord, AuditEntry, Database, Tenant, Transaction
from tenantkit.errors import (
    AuthenticationError,
    DatabaseError,
    KeyNotFound,
    TenantNotFound,
    TenantSuspended,
    ValidationError,
)

__all__ = [
    "MAX_KEY_LENGTH",
    "MIN_ADMIN_KEY_LENGTH",
    "SCOPE_PATTERN",
    "IssuedKey",
    "KeyManager",
    "Principal",
    "verify_admin_key",
]

logger = logging.getLogger(__name__)

SCOPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/*-]{0,63}")
"""What a scope looks like, e.g. ``functions:embed`` or ``files:read``."""

_LABEL_MAX = 64
MIN_ADMIN_KEY_LENGTH = 16
"""Shortest admin key accepted; with a shorter one configured, admin access is off."""
_SCOPES_MAX = 32
_LONGEST = 100 * 365.25 * 86400  # longest expiry or grace accepted: 100 years
MAX_KEY_LENGTH = 4096
"""Longest API key looked at; anything longer is refused before any parsing.

A key with the most scopes allowed is under 3,000 characters."""
_LAST_USED_EVERY = 60.0  # record a key's last use at most once a minute
_TOUCH_FLUSH_EVERY = 1.0  # write pending last-use times at most once a second


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly minted key: the secret string (shown once) and its stored record."""

    api_key: str
    record: ApiKeyRecord

    def __repr__(self) -> str:  # never print the key by accident
        return f"IssuedKey(record={self.record!r})"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified key speaks for."""

    tenant: Tenant
    key: ApiKeyRecord

    @property
    def tenant_id(self) -> str:
        return self.tenant.id

    @property
    def key_id(self) -> str:
        return self.key.id

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.key.scopes

    @property
    def tier(self) -> str:
        """The tenant's tier name, as stored now (never from the token)."""
        return self.tenant.tier


@dataclass(slots=True)
class _Entry:
    principal: Principal
    exp: float | None
    iat: int
    hint: str
    loaded_at: float
    touched_at: float


def verify_admin_key(presented: str | None, settings: Settings) -> None:
    """Check an admin bearer key against ``settings.admin_key`` in constant time.

    Raises:
        AuthenticationError: no admin key configured, or a different one presented.
    """
    configured = settings.admin_key.get_secret_value() if settings.admin_key else ""
    if not configured:
        raise AuthenticationError("admin access is disabled: no TENANTKIT_ADMIN_KEY is configured")
    if len(configured) < MIN_ADMIN_KEY_LENGTH:
        raise AuthenticationError(
            f"admin access is disabled: TENANTKIT_ADMIN_KEY is shorter than "
            f"{MIN_ADMIN_KEY_LENGTH} characters (`tenantkit secret create` makes a strong one)"
        )
    if not isinstance(presented, str) or not hmac.compare_digest(
        _admin_digest(presented), _admin_digest(configured)
    ):
        raise AuthenticationError("invalid admin key")


def _admin_digest(key: str) -> bytes:
    # Hashing first makes the comparison's time independent of both lengths too.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _new_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


def _check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        raise ValidationError("scopes must be a list of strings, not one string")
    checked: list[str] = []
    if len(scopes) > _SCOPES_MAX:
        raise ValidationError(f"a key has at most {_SCOPES_MAX} scopes")
    for scope in scopes:
        if not isinstance(scope, str) or SCOPE_PATTERN.fullmatch(scope) is None:
            raise ValidationError(
                f"invalid scope {scope!r}: use 1-64 letters, digits and _.:/*- "
                "starting with a letter or digit"
            )
        if scope not in checked:
            checked.append(scope)
    return tuple(checked)


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip() or len(label) > _LABEL_MAX:
        raise ValidationError(f"a key label is 1-{_LABEL_MAX} characters")
    if not label.isprintable():
        raise ValidationError("a key label must be printable text")
    return label.strip()


def _claims_of(payload: dict[str, Any]) -> tuple[str, str, int, float | None]:
    """``(tenant_id, key_id, iat, exp)`` from verified claims, or AuthenticationError."""
    sub, jti, iat, exp = (payload.get(n) for n in ("sub", "jti", "iat", "exp"))
    scopes = payload.get("scopes", [])
    numbers = (int, float)
    if (
        not isinstance(sub, str)
        or not isinstance(jti, str)
        or not isinstance(iat, numbers)
        or isinstance(iat, bool)
        or (exp is not None and (not isinstance(exp, numbers) or isinstance(exp, bool)))
        or not isinstance(scopes, list)
    ):
        raise AuthenticationError("invalid API key: malformed claims")
    if isinstance(iat, float) and not iat.is_integer():
        raise AuthenticationError("invalid API key: malformed claims")
    return sub, jti, int(iat), None if exp is None else float(exp)


_MANAGERS: weakref.WeakSet[KeyManager] = weakref.WeakSet()
_MANAGERS_LOCK = threading.Lock()


class KeyManager:
    """Mints, verifies, revokes and rotates API keys stored in ``db``.

    Args:
        db: The records database.
        settings: Signing keys, key prefix and ``auth_cache_ttl``.
        clock: UNIX time source (tests inject one).
        keyring: Signing keys to use instead of the ones ``settings`` name.
        cache_size: Most verified keys kept in memory.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        keyring: Keyring | None = None,
        cache_size: int = 250_000,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.prefix = settings.key_prefix
        self.cache_ttl = settings.auth_cache_ttl
        self.cache_size = cache_size
        self._keyring = keyring
        self._cache: dict[bytes, _Entry] = {}
        self._by_tenant: dict[str, set[bytes]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._touches: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self._next_touch_flush = 0.0
        with _MANAGERS_LOCK:
            _MANAGERS.add(self)

    @property
    def keyring(self) -> Keyring:
        """The signing keys (loaded, or generated locally, on first use)."""
        if self._keyring is None:
            self._keyring = load_keyring(self.settings)
        return self._keyring

    # -- minting ---------------------------------------------------------------

    def mint(
        self,
        tenant_id: str,
        *,
        label: str = "default",
        scopes: Sequence[str] = (),
        expires_in: float | None = None,
        actor: str = "system",
    ) -> IssuedKey:
        """Create a key for an existing tenant.

        Args:
            tenant_id: The tenant the key speaks for.
            label: A name for people (``"default"``, ``"ci"``).
            scopes: What the key may do; empty means everything the tier allows.
            expires_in: Seconds until the key stops working (``None``: never).
            actor: Who did it, for the audit trail.

        Raises:
            TenantNotFound, InvalidTenantId, ValidationError.
        """
        validate_tenant_id(tenant_id)
        with self.db.transaction() as tx:
            if tx.get_tenant(tenant_id) is None:
                raise TenantNotFound(f"tenant {tenant_id!r} not found")
            return self.mint_in(
                tx, tenant_id, label=label, scopes=scopes, expires_in=expires_in, actor=actor
            )

    def mint_in(
        self,
        tx: Transaction,
        tenant_id: str,
        *,
        label: str = "default",
        scopes: Sequence[str] = (),
        expires_in: float | None = None,
        actor: str = "system",
    ) -> IssuedKey:
        """:meth:`mint` inside the caller's write transaction (the tenant must exist)."""
        label = _check_label(label)
        checked = _check_scopes(scopes)
        if expires_in is not None and not (
            isinstance(expires_in, int | float) and 0 < expires_in <= _LONGEST
        ):
            raise ValidationError(
                "expires_in must be a positive number of seconds (100 years at most)"
            )
        now = self.clock()
        key_id = _new_key_id()
        claims: dict[str, Any] = {"sub": tenant_id, "jti": key_id, "iat": int(now)}
        expires_at = None
        if expires_in is not None:
            expires_at = float(int(now + expires_in))
            claims["exp"] = int(expires_at)
        claims["scopes"] = list(checked)
        api_key = self.prefix + self.keyring.sign(claims)
        record = ApiKeyRecord(
            id=key_id,
            tenant_id=tenant_id,
            label=label,
            hint=self._hint(api_key),
            created_at=now,
            scopes=checked,
            expires_at=expires_at,
        )
        tx.create_key(record)
        self._audit(tx, actor, "key.create", tenant_id, key_id=key_id, label=label)
        return IssuedKey(api_key, record)

    def _hint(self, api_key: str) -> str:
        """What a key's record shows of it: the prefix and the last 4 characters."""
        return f"{self.prefix}...{api_key[-4:]}"

    # -- verifying -------------------------------------------------------------

    def verify(self, api_key: str) -> Principal:
        """The principal ``api_key`` speaks for.

        Raises:
            AuthenticationError: malformed, forged, expired, revoked or unknown
                key, or a deleted tenant.
            TenantSuspended: the tenant is suspended.
        """
        self._check_shape(api_key)
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()
        now = self.clock()
        entry = self._cache.get(digest)
        if entry is None:
            entry = self._load(api_key, digest, now)
        elif now - entry.loaded_at >= self.cache_ttl:
            # the same string was verified before: only the records can have changed
            principal = entry.principal
            entry = self._read_records(
                digest,
                principal.tenant.id,
                principal.key.id,
                entry.iat,
                entry.exp,
                entry.hint,
                now,
                entry.touched_at,
            )
        principal = self._admit(entry, now)
        if now >= self._next_touch_flush and self._touches:
            self.flush_last_used()
        return principal

    def verify_cached(self, api_key: str) -> Principal | None:
        """:meth:`verify` when it can answer from memory alone, else ``None``.

        Never touches the database (last-use times are queued for the next
        :meth:`flush_last_used`), so an event loop can call it inline and hand
        only the ``None`` cases to :meth:`verify` in a worker thread.

        Raises:
            AuthenticationError, TenantSuspended: as :meth:`verify`, for a cached key.
        """
        self._check_shape(api_key)
        entry = self._cache.get(hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest())
        now = self.clock()
        if entry is None or now - entry.loaded_at >= self.cache_ttl:
            return None
        return self._admit(entry, now)

    def _check_shape(self, api_key: object) -> None:
        if (
            not isinstance(api_key, str)
            or len(api_key) > MAX_KEY_LENGTH
            or not api_key.startswith(self.prefix)
        ):
            raise AuthenticationError("invalid API key")

    def _admit(self, entry: _Entry, now: float) -> Principal:
        """Check a loaded entry at ``now`` and note the key's use."""
        if entry.exp is not None and now >= entry.exp:
            raise AuthenticationError("API key expired")
        principal = entry.principal
        if not principal.key.usable_at(now):
            raise AuthenticationError("API key revoked or expired")
        if principal.tenant.status != "active":
            raise TenantSuspended(f"tenant {principal.tenant.id!r} is suspended")
        if now - entry.touched_at >= _LAST_USED_EVERY:
            entry.touched_at = now
            with self._touch_lock:
                self._touches[principal.key.id] = now
        return principal

    def _load(self, api_key: str, digest: bytes, now: float) -> _Entry:
        """The slow path: signature and claims, then the key and tenant records."""
        payload = self.keyring.decode(api_key[len(self.prefix) :])
        tenant_id, key_id, iat, exp = _claims_of(payload)
        if exp is not None and now >= exp:
            raise AuthenticationError("API key expired")
        hint = self._hint(api_key)
        return self._read_records(digest, tenant_id, key_id, iat, exp, hint, now, float("-inf"))

    def _read_records(
        self,
        digest: bytes,
        tenant_id: str,
        key_id: str,
        iat: int,
        exp: float | None,
        hint: str,
        now: float,
        touched_at: float,
    ) -> _Entry:
        """Read the key and tenant records and cache them under ``digest``.

        The record must be the one the token was minted with: same tenant,
        created in the second of the token's ``iat``, with the token's hint.
        """
        generation = self._generation
        with self.db.transaction(write=False) as tx:
            record = tx.get_key(key_id)
            tenant = tx.get_tenant(tenant_id) if record is not None else None
        if (
            record is None
            or tenant is None
            or record.tenant_id != tenant_id
            or int(record.created_at) != iat
            or not hmac.compare_digest(record.hint.encode(), hint.encode())
        ):
            with self._lock:
                self._cache.pop(digest, None)
            raise AuthenticationError("API key revoked or unknown")
        if record.last_used_at is not None:
            touched_at = max(touched_at, record.last_used_at)
        entry = _Entry(Principal(tenant, record), exp, iat, hint, now, touched_at)
        with self._lock:
            if generation == self._generation:  # no invalidation raced this read
                if digest not in self._cache and len(self._cache) >= self.cache_size:
                    self._evict_oldest()
                self._cache[digest] = entry
                self._by_tenant.setdefault(tenant_id, set()).add(digest)
        return entry

    def _evict_oldest(self) -> None:
        digest = next(iter(self._cache))
        entry = self._cache.pop(digest)
        digests = self._by_tenant.get(entry.principal.tenant.id)
        if digests is not None:
            digests.discard(digest)
            if not digests:
                del self._by_tenant[entry.principal.tenant.id]

    def flush_last_used(self) -> int:
        """Write pending last-use times (best effort); return how many keys.

        :meth:`verify` calls this itself at most once a second, in one write
        transaction for every key used since; a database error is logged, not raised.
        """
        with self._touch_lock:
            self._next_touch_flush = self.clock() + _TOUCH_FLUSH_EVERY
            touches, self._touches = self._touches, {}
        if not touches:
            return 0
        try:
            with self.db.transaction() as tx:
                for key_id, used_at in touches.items():
                    tx.touch_key(key_id, used_at)
        except DatabaseError:
            logger.warning("could not record when %d API keys were last used", len(touches))
            return 0
        return len(touches)

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Drop cached verifications (of one tenant, or all) in every key manager
        on this database in this process.

        Other processes are not reached: their entries lapse on their own
        within ``settings.auth_cache_ttl`` seconds.
        """
        with _MANAGERS_LOCK:
            managers = [m for m in _MANAGERS if m.db.url == self.db.url]
        for manager in managers:
            manager._invalidate_local(tenant_id)

    def _invalidate_local(self, tenant_id: str | None) -> None:
        with self._lock:
            self._generation += 1
            if tenant_id is None:
                self._cache.clear()
                self._by_tenant.clear()
                return
            for digest in self._by_tenant.pop(tenant_id, ()):
                self._cache.pop(digest, None)

    # -- listing, revoking, rotating ---------------------------------------

    def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """A tenant's keys, oldest first, revoked ones included.

        Raises:
            TenantNotFound.
        """
        validate_tenant_id(tenant_id)
        with self.db.transaction(write=False) as tx:
            if tx.get_tenant(tenant_id) is None:
                raise TenantNotFound(f"tenant {tenant_id!r} not found")
            return tx.list_keys(tenant_id)

    def revoke(self, tenant_id: str, key_id: str, *, actor: str = "system") -> ApiKeyRecord:
        """Stop a key working: the next verification in this process refuses it,
        and other processes refuse it within ``settings.auth_cache_ttl`` seconds
        (their cached verification lapses then).

        Raises:
            KeyNotFound: no such key for this tenant.
        """
        validate_tenant_id(tenant_id)
        try:
            with self.db.transaction() as tx:
                record = self._own_key(tx, tenant_id, key_id)
                record = tx.set_key_revoked(record.id, self.clock())
                self._audit(tx, actor, "key.revoke", tenant_id, key_id=key_id)
        finally:
            self.invalidate(tenant_id)
        return record

    def rotate(
        self,
        tenant_id: str,
        key_id: str | None = None,
        *,
        grace: float = 0,
        actor: str = "system",
    ) -> IssuedKey:
        """Issue a replacement key; the old one keeps working for ``grace`` seconds.

        Args:
            tenant_id: The tenant.
            key_id: The key to replace; ``None`` replaces every key usable now.
            grace: Seconds the old key(s) keep working (0: refused at once in
                this process, within ``settings.auth_cache_ttl`` in others).
            actor: Who did it, for the audit trail.

        The new key takes the old key's label and scopes (the newest one's,
        when several are replaced).

        Raises:
            TenantNotFound, KeyNotFound, ValidationError.
        """
        validate_tenant_id(tenant_id)
        if not (isinstance(grace, int | float) and 0 <= grace <= _LONGEST):
            raise ValidationError("grace must be zero or more seconds (100 years at most)")
        try:
            with self.db.transaction() as tx:
                now = self.clock()
                if key_id is not None:
                    old = [self._own_key(tx, tenant_id, key_id)]
                else:
                    if tx.get_tenant(tenant_id) is None:
                        raise TenantNotFound(f"tenant {tenant_id!r} not found")
                    old = [k for k in tx.list_keys(tenant_id) if k.usable_at(now)]
                template = old[-1] if old else None
                issued = self.mint_in(
                    tx,
                    tenant_id,
                    label=template.label if template else "default",
                    scopes=template.scopes if template else (),
                    actor=actor,
                )
                for record in old:
                    tx.set_key_revoked(record.id, now + grace)
                self._audit(
                    tx,
                    actor,
                    "key.rotate",
                    tenant_id,
                    key_id=issued.record.id,
                    replaced=[k.id for k in old],
                    grace=grace,
                )
        finally:
            self.invalidate(tenant_id)
        return issued

    def _own_key(self, tx: Transaction, tenant_id: str, key_id: str) -> ApiKeyRecord:
        record = tx.get_key(key_id) if isinstance(key_id, str) else None
        if record is None or record.tenant_id != tenant_id:
            raise KeyNotFound(f"key {key_id!r} not found for tenant {tenant_id!r}")
        return record

    def _audit(
        self, tx: Transaction, actor: str, action: str, tenant_id: str | None, **detail: Any
    ) -> None:
        tx.audit(AuditEntry.new(self.clock(), actor, action, tenant_id, **detail))

    def close(self) -> None:
        """Write pending last-use times."""
        self.flush_last_used()
