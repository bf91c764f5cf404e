"""KeyManager: minting, verification, the forged-key matrix, caching, revocation and rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tenantkit.auth import IssuedKey, KeyManager, Keyring, Principal, verify_admin_key
from tenantkit.auth.signing import generate_ed25519_pem
from tenantkit.config import Settings, get_settings
from tenantkit.db import Database, Transaction
from tenantkit.errors import (
    AuthenticationError,
    KeyNotFound,
    TenantNotFound,
    TenantSuspended,
    ValidationError,
)
from tenantkit.tenants import TenantService

SECRET = "s3cret-" * 6
OTHER_SECRET = "other-" * 7
T0 = 1_800_000_000.0


class Clock:
    """A hand-driven clock."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingDatabase:
    """A real database that counts the transactions opened on it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.url = db.url
        self.backend = db.backend
        self.transactions = 0

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        self.transactions += 1
        return self._db.transaction(write=write)

    def migrate(self) -> int:
        return self._db.migrate()

    def schema_version(self) -> int:
        return self._db.schema_version()

    def ping(self) -> bool:
        return self._db.ping()

    def close(self) -> None:
        self._db.close()


def hs_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "signing_key": SECRET}
    values.update(overrides)
    return get_settings(**values)


def ed_settings(tmp_path: Path, pem: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "signing_key": pem,
        "jwt_algorithm": "EdDSA",
    }
    values.update(overrides)
    return get_settings(**values)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT built by hand (PyJWT refuses PEM-looking HMAC secrets)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def hs384(claims: dict[str, Any], kid: str) -> str:
    with warnings.catch_warnings():  # SECRET is short for HS384; that is not the point here
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, SECRET, algorithm="HS384", headers={"kid": kid})


def claims_of(api_key: str) -> dict[str, Any]:
    return jwt.decode(api_key[3:], options={"verify_signature": False})


def header_of(api_key: str) -> dict[str, Any]:
    return jwt.get_unverified_header(api_key[3:])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counting(database: Database) -> CountingDatabase:
    return CountingDatabase(database)


@pytest.fixture
def keys(counting: CountingDatabase, tmp_path: Path, clock: Clock) -> KeyManager:
    return KeyManager(counting, hs_settings(tmp_path, auth_cache_ttl=3600), clock=clock)


@pytest.fixture
def tenants(keys: KeyManager, clock: Clock) -> TenantService:
    return TenantService(keys.db, keys, clock=clock)


@pytest.fixture
def issued(tenants: TenantService) -> IssuedKey:
    return tenants.create("acme-corp", "Acme Corporation", "pro", "admin@acme.com")[1]


# -- minting ----------------------------------------------------------------


def test_key_shape_and_claims(issued: IssuedKey, keys: KeyManager) -> None:
    assert issued.api_key.startswith("mt_eyJ")
    claims = claims_of(issued.api_key)
    assert set(claims) == {"sub", "jti", "iat", "scopes"}
    assert claims["sub"] == "acme-corp"
    assert claims["jti"] == issued.record.id
    assert claims["iat"] == int(T0)
    assert header_of(issued.api_key) == {
        "alg": "HS256",
        "typ": "JWT",
        "kid": keys.keyring.current.kid,
    }
    # no tier, no personal data, no admin flag anywhere in the key
    decoded = json.dumps(claims) + json.dumps(header_of(issued.api_key))
    for leaked in ("pro", "admin", "acme.com", "Acme Corporation", "tier"):
        assert leaked not in decoded


def test_record_never_holds_the_key(issued: IssuedKey, keys: KeyManager) -> None:
    with keys.db.transaction(write=False) as tx:
        rows = list(tx.export_rows())
    dumped = json.dumps(rows, default=str)
    assert issued.api_key not in dumped
    assert issued.api_key[3:] not in dumped
    signature = issued.api_key.rsplit(".", 1)[1]
    assert signature not in dumped
    assert issued.record.hint == f"mt_...{issued.api_key[-4:]}"
    assert issued.api_key not in repr(issued)


def test_mint_with_expiry_and_scopes(keys: KeyManager, issued: IssuedKey, clock: Clock) -> None:
    extra = keys.mint(
        "acme-corp", label="ci", scopes=["files:read", "functions:embed"], expires_in=60
    )
    claims = claims_of(extra.api_key)
    assert claims["exp"] == int(T0 + 60)
    assert claims["scopes"] == ["files:read", "functions:embed"]
    principal = keys.verify(extra.api_key)
    assert principal.scopes == ("files:read", "functions:embed")
    assert principal.key.label == "ci"


def test_mint_for_unknown_tenant(keys: KeyManager) -> None:
    with pytest.raises(TenantNotFound):
        keys.mint("nobody-here")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scopes": "files:read"},
        {"scopes": ["has space"]},
        {"scopes": [""]},
        {"label": ""},
        {"label": "x" * 65},
        {"expires_in": 0},
        {"expires_in": -5},
    ],
)
def test_mint_rejects_bad_options(keys: KeyManager, issued: IssuedKey, kwargs: Any) -> None:
    with pytest.raises(ValidationError):
        keys.mint("acme-corp", **kwargs)


# -- round trips (Hypothesis) -------------------------------------------------

tenant_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{1,62}", fullmatch=True)
scope_lists = st.lists(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/*-]{0,20}", fullmatch=True), max_size=4, unique=True
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tenant_id=tenant_ids, scopes=scope_lists)
def test_mint_verify_round_trip(
    keys: KeyManager, tenants: TenantService, tenant_id: str, scopes: list[str]
) -> None:
    # the database is shared by the examples: create each tenant once
    with keys.db.transaction(write=False) as tx:
        exists = tx.get_tenant(tenant_id) is not None
    if not exists:
        tenants.create(tenant_id, "Tenant", "free")
    minted = keys.mint(tenant_id, scopes=scopes)
    principal = keys.verify(minted.api_key)
    assert principal.tenant_id == tenant_id
    assert principal.key_id == minted.record.id
    assert principal.scopes == tuple(scopes)
    assert principal.tier == "free"
    assert keys.verify(minted.api_key) == principal  # cached path agrees


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@example(data=None)  # the last character of the signature, re-spelled (see below)
def test_any_single_byte_tamper_is_rejected(
    keys: KeyManager, issued: IssuedKey, data: st.DataObject | None
) -> None:
    raw = issued.api_key.encode()
    if data is None:
        position = len(raw) - 1
        # a base64 character differing only in bits the decoder ignores
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        index = alphabet.index(raw[-1])
        replacement = alphabet[index ^ 1]
    else:
        position = data.draw(st.integers(0, len(raw) - 1), label="position")
        replacement = data.draw(
            st.integers(0, 255).filter(lambda b: b != raw[position]), label="byte"
        )
    tampered = raw[:position] + bytes([replacement]) + raw[position + 1 :]
    with pytest.raises(AuthenticationError):
        keys.verify(tampered.decode("latin-1"))
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"


# -- the forged-key matrix ----------------------------------------------------


def _forged_hs(issued: IssuedKey, keys: KeyManager) -> dict[str, str]:
    """Keys an attacker could build, against an HS256 deployment."""
    claims = claims_of(issued.api_key)
    kid = keys.keyring.current.kid
    attacker = Ed25519PrivateKey.generate()
    header, payload, signature = issued.api_key[3:].split(".")
    other_claims = {**claims, "sub": "evil-corp"}
    tampered_payload = b64(json.dumps(other_claims, separators=(",", ":")).encode())
    none_header = b64(b'{"alg":"none","typ":"JWT"}')
    return {
        "alg none": "mt_" + jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "alg none, unsigned header": "mt_" + f"{none_header}.{payload}.",
        "EdDSA token against HS256": "mt_"
        + jwt.encode(claims, attacker, algorithm="EdDSA", headers={"kid": kid}),
        "wrong secret": "mt_"
        + jwt.encode(claims, OTHER_SECRET, algorithm="HS256", headers={"kid": kid}),
        "tampered payload": f"mt_{header}.{tampered_payload}.{signature}",
        "expired": "mt_"
        + jwt.encode(
            {**claims, "exp": int(T0) - 1}, SECRET, algorithm="HS256", headers={"kid": kid}
        ),
        "unknown kid": "mt_"
        + jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "not-a-kid"}),
        "no kid": "mt_" + jwt.encode(claims, SECRET, algorithm="HS256"),
        "HS384 with the right secret": "mt_" + hs384(claims, kid),
        "another prefix": "sk_" + issued.api_key[3:],
        "no prefix": issued.api_key[3:],
        "empty": "",
        "prefix only": "mt_",
        "two segments": "mt_" + ".".join(issued.api_key[3:].split(".")[:2]),
        "claims not an object": "mt_"
        + hs256_token({"alg": "HS256", "kid": kid}, claims, SECRET.encode()).replace(
            b64(json.dumps(claims).encode()), b64(b"[1, 2]")
        ),
    }


def test_forged_hs256_keys_fail_before_any_database_read(
    keys: KeyManager, issued: IssuedKey, counting: CountingDatabase
) -> None:
    forged = _forged_hs(issued, keys)
    assert len(forged) >= 14
    before = counting.transactions
    for name, api_key in forged.items():
        with pytest.raises(AuthenticationError):
            keys.verify(api_key)
        assert counting.transactions == before, name
    # and the genuine key still works (the matrix is not rejecting everything)
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"


def test_signed_claims_with_wrong_types_are_refused(keys: KeyManager, issued: IssuedKey) -> None:
    kid = keys.keyring.current.kid
    good = claims_of(issued.api_key)
    for bad in (
        {**good, "sub": 5},
        {**good, "jti": None},
        {**good, "iat": "yesterday"},
        {**good, "iat": True},
        {**good, "exp": "never"},
        {**good, "scopes": "all"},
        {k: v for k, v in good.items() if k != "jti"},
    ):
        token = "mt_" + jwt.encode(bad, SECRET, algorithm="HS256", headers={"kid": kid})
        with pytest.raises(AuthenticationError):
            keys.verify(token)


def test_signed_key_for_a_missing_record_is_refused(keys: KeyManager, issued: IssuedKey) -> None:
    kid = keys.keyring.current.kid
    claims = {**claims_of(issued.api_key), "jti": "key_0000000000000000"}
    token = "mt_" + jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": kid})
    with pytest.raises(AuthenticationError):
        keys.verify(token)
    # a real key id under another tenant's name is refused too
    claims = {**claims_of(issued.api_key), "sub": "other-corp"}
    token = "mt_" + jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": kid})
    with pytest.raises(AuthenticationError):
        keys.verify(token)


def test_eddsa_keys_and_algorithm_confusion(database: Database, tmp_path: Path) -> None:
    pem = generate_ed25519_pem()
    keys = KeyManager(CountingDatabase(database), ed_settings(tmp_path, pem), clock=Clock())
    tenants = TenantService(keys.db, keys, clock=Clock())
    _, issued = tenants.create("acme-corp", "Acme", "pro")
    assert header_of(issued.api_key)["alg"] == "EdDSA"
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"

    claims = claims_of(issued.api_key)
    kid = keys.keyring.current.kid
    private = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(private, Ed25519PrivateKey)
    public = private.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem_public = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    forged = {
        "HS256 with raw public key": "mt_" + hs256_token(header, claims, raw_public),
        "HS256 with PEM public key": "mt_" + hs256_token(header, claims, pem_public),
        "alg none": "mt_" + jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "another Ed25519 key": "mt_"
        + jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}),
        "tampered payload": "mt_"
        + ".".join(
            [
                issued.api_key[3:].split(".")[0],
                b64(json.dumps({**claims, "sub": "evil-corp"}).encode()),
                issued.api_key.rsplit(".", 1)[1],
            ]
        ),
    }
    db = keys.db
    assert isinstance(db, CountingDatabase)
    before = db.transactions
    for name, api_key in forged.items():
        with pytest.raises(AuthenticationError):
            keys.verify(api_key)
        assert db.transactions == before, name


def test_hs256_deployment_refuses_a_key_signed_by_an_eddsa_deployment(
    database: Database, tmp_path: Path
) -> None:
    ed_keys = KeyManager(database, ed_settings(tmp_path / "ed", generate_ed25519_pem()))
    _, ed_issued = TenantService(database, ed_keys).create("acme-corp", "Acme", "pro")
    hs_keys = KeyManager(database, hs_settings(tmp_path))
    with pytest.raises(AuthenticationError, match="algorithm"):
        hs_keys.verify(ed_issued.api_key)


# -- expiry, revocation, rotation -------------------------------------------


def test_expired_key(keys: KeyManager, issued: IssuedKey, clock: Clock) -> None:
    short = keys.mint("acme-corp", expires_in=10)
    assert keys.verify(short.api_key).key_id == short.record.id
    clock.advance(9.5)
    keys.verify(short.api_key)  # cached, still inside its life
    clock.advance(1)
    with pytest.raises(AuthenticationError, match="expired"):
        keys.verify(short.api_key)
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"


def test_revoke_is_refused_on_the_very_next_verification(
    keys: KeyManager, issued: IssuedKey
) -> None:
    assert keys.verify(issued.api_key).key_id == issued.record.id  # now cached (ttl 3600)
    record = keys.revoke("acme-corp", issued.record.id)
    assert record.revoked_at == T0
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)


def test_revoke_through_another_manager_in_this_process(
    keys: KeyManager, issued: IssuedKey, tmp_path: Path, database: Database
) -> None:
    keys.verify(issued.api_key)
    admin = KeyManager(database, hs_settings(tmp_path))  # e.g. the admin API's own manager
    admin.revoke("acme-corp", issued.record.id)
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)


def test_changes_from_another_process_apply_after_the_cache_ttl(
    counting: CountingDatabase, tmp_path: Path, clock: Clock, database: Database
) -> None:
    keys = KeyManager(counting, hs_settings(tmp_path, auth_cache_ttl=5), clock=clock)
    _, issued = TenantService(counting, keys, clock=clock).create("acme-corp", "Acme", "pro")
    keys.verify(issued.api_key)
    with database.transaction() as tx:  # what another process's revoke writes
        tx.set_key_revoked(issued.record.id, clock())
    clock.advance(4)
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"  # still trusted from cache
    clock.advance(1)
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)


def test_deletion_by_another_process_applies_after_the_cache_ttl(
    counting: CountingDatabase, tmp_path: Path, clock: Clock, database: Database
) -> None:
    keys = KeyManager(counting, hs_settings(tmp_path, auth_cache_ttl=5), clock=clock)
    tenants = TenantService(counting, keys, clock=clock)
    _, issued = tenants.create("acme-corp", "Acme", "pro")
    _, other = tenants.create("other-corp", "Other", "pro")
    keys.verify(issued.api_key)
    keys.verify(other.api_key)
    with database.transaction() as tx:  # what another process's delete and suspend write
        tx.delete_tenant("acme-corp")
        tx.update_tenant("other-corp", now=clock(), status="suspended")
    clock.advance(5)
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)
    with pytest.raises(TenantSuspended):
        keys.verify(other.api_key)
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)  # and stays refused


def test_revoke_unknown_or_foreign_key(
    keys: KeyManager, tenants: TenantService, issued: IssuedKey
) -> None:
    _, other = tenants.create("other-corp", "Other", "free")
    with pytest.raises(KeyNotFound):
        keys.revoke("acme-corp", "key_doesnotexist0000")
    with pytest.raises(KeyNotFound):
        keys.revoke("acme-corp", other.record.id)  # another tenant's key
    assert keys.verify(other.api_key).tenant_id == "other-corp"


def test_rotate_with_grace(keys: KeyManager, issued: IssuedKey, clock: Clock) -> None:
    keys.verify(issued.api_key)
    new = keys.rotate("acme-corp", issued.record.id, grace=24 * 3600)
    assert new.record.id != issued.record.id
    assert new.record.label == issued.record.label
    clock.advance(24 * 3600 - 1)
    assert keys.verify(issued.api_key).key_id == issued.record.id  # inside the grace period
    assert keys.verify(new.api_key).key_id == new.record.id
    clock.advance(1)
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)  # rotated past grace
    assert keys.verify(new.api_key).key_id == new.record.id


def test_rotate_without_grace_refuses_the_old_key_at_once(
    keys: KeyManager, issued: IssuedKey
) -> None:
    keys.verify(issued.api_key)
    new = keys.rotate("acme-corp")
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)
    assert keys.verify(new.api_key).tenant_id == "acme-corp"


def test_rotate_all_keys_keeps_scopes(keys: KeyManager, issued: IssuedKey, clock: Clock) -> None:
    clock.advance(1)  # the newest key is the template
    scoped = keys.mint("acme-corp", label="reader", scopes=["files:read"])
    new = keys.rotate("acme-corp", grace=60)
    assert new.record.scopes == ("files:read",)
    assert new.record.label == "reader"
    records = {r.id: r for r in keys.list_keys("acme-corp")}
    assert records[issued.record.id].revoked_at == T0 + 61
    assert records[scoped.record.id].revoked_at == T0 + 61
    assert records[new.record.id].revoked_at is None


def test_rotate_refuses_negative_grace_and_unknown_tenant(
    keys: KeyManager, issued: IssuedKey
) -> None:
    with pytest.raises(ValidationError):
        keys.rotate("acme-corp", grace=-1)
    with pytest.raises(TenantNotFound):
        keys.rotate("nobody-here")


# -- signing keys -----------------------------------------------------------


def test_retired_signing_key_stops_verifying(
    database: Database, tmp_path: Path, clock: Clock
) -> None:
    old_keys = KeyManager(database, hs_settings(tmp_path), clock=clock)
    _, issued = TenantService(database, old_keys, clock=clock).create("acme-corp", "Acme", "pro")

    new_secret = "new-secret-" * 4
    rotating = KeyManager(
        database,
        hs_settings(tmp_path, signing_key=new_secret, previous_signing_keys=[SECRET]),
        clock=clock,
    )
    assert rotating.verify(issued.api_key).tenant_id == "acme-corp"  # still verifies
    fresh = rotating.mint("acme-corp")
    assert header_of(fresh.api_key)["kid"] != header_of(issued.api_key)["kid"]

    retired = KeyManager(database, hs_settings(tmp_path, signing_key=new_secret), clock=clock)
    with pytest.raises(AuthenticationError, match="retired"):
        retired.verify(issued.api_key)
    assert retired.verify(fresh.api_key).tenant_id == "acme-corp"


# -- tenant status ------------------------------------------------------------


def test_suspended_tenant_is_refused_until_resumed(
    keys: KeyManager, tenants: TenantService, issued: IssuedKey
) -> None:
    keys.verify(issued.api_key)
    tenants.suspend("acme-corp", "unpaid invoice")
    with pytest.raises(TenantSuspended) as info:
        keys.verify(issued.api_key)
    assert info.value.status == 403
    assert "unpaid" not in str(info.value)
    tenants.resume("acme-corp")
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"


def test_deleted_tenant_key_is_refused(
    keys: KeyManager, tenants: TenantService, issued: IssuedKey
) -> None:
    keys.verify(issued.api_key)
    tenants.delete("acme-corp")
    with pytest.raises(AuthenticationError) as info:
        keys.verify(issued.api_key)
    assert info.value.status == 401
    # a new tenant with the same id does not revive the old key
    tenants.create("acme-corp", "Acme again", "free")
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)


def test_tier_change_applies_to_the_same_key_at_once(
    keys: KeyManager, tenants: TenantService, issued: IssuedKey
) -> None:
    assert keys.verify(issued.api_key).tier == "pro"
    tenants.change_tier("acme-corp", "enterprise")
    assert keys.verify(issued.api_key).tier == "enterprise"


# -- the cache and last use ------------------------------------------------------


def test_cached_verification_reads_nothing(
    keys: KeyManager, issued: IssuedKey, counting: CountingDatabase
) -> None:
    first = keys.verify(issued.api_key)
    before = counting.transactions
    for _ in range(50):
        assert keys.verify(issued.api_key) == first
    assert counting.transactions == before


def test_last_used_is_recorded_at_most_once_a_minute(
    keys: KeyManager, issued: IssuedKey, counting: CountingDatabase, clock: Clock
) -> None:
    keys.verify(issued.api_key)
    [record] = keys.list_keys("acme-corp")
    assert record.last_used_at == T0
    before = counting.transactions
    clock.advance(30)
    keys.verify(issued.api_key)
    assert counting.transactions == before  # not due yet
    clock.advance(31)
    keys.verify(issued.api_key)
    [record] = keys.list_keys("acme-corp")
    assert record.last_used_at == T0 + 61


def test_verify_cached_never_reads(
    keys: KeyManager, tenants: TenantService, issued: IssuedKey, counting: CountingDatabase,
    clock: Clock,
) -> None:  # fmt: skip
    before = counting.transactions
    assert keys.verify_cached(issued.api_key) is None  # not seen yet
    with pytest.raises(AuthenticationError):
        keys.verify_cached("sk_" + issued.api_key[3:])
    assert counting.transactions == before
    principal = keys.verify(issued.api_key)
    before = counting.transactions
    clock.advance(120)  # a last use is due: queued, not written
    assert keys.verify_cached(issued.api_key) == principal
    assert counting.transactions == before
    assert keys.flush_last_used() == 1
    [record] = keys.list_keys("acme-corp")
    assert record.last_used_at == T0 + 120
    tenants.suspend("acme-corp")
    assert keys.verify_cached(issued.api_key) is None  # dropped from the cache
    with pytest.raises(TenantSuspended):
        keys.verify(issued.api_key)
    with pytest.raises(TenantSuspended):
        keys.verify_cached(issued.api_key)
    clock.advance(3600)  # older than the cache ttl
    assert keys.verify_cached(issued.api_key) is None


def test_invalidate_drops_everything(
    keys: KeyManager, issued: IssuedKey, counting: CountingDatabase
) -> None:
    keys.verify(issued.api_key)
    keys.invalidate()
    before = counting.transactions
    keys.verify(issued.api_key)
    assert counting.transactions == before + 1


def test_cache_is_bounded(database: Database, tmp_path: Path) -> None:
    keys = KeyManager(database, hs_settings(tmp_path), cache_size=3)
    tenants = TenantService(database, keys)
    issued = [tenants.create(f"tenant-{i}", "T", "free")[1] for i in range(5)]
    for minted in issued:
        keys.verify(minted.api_key)
    assert len(keys._cache) == 3
    assert sum(len(v) for v in keys._by_tenant.values()) == 3
    assert all(keys.verify(m.api_key).key_id == m.record.id for m in issued)


def test_principal_properties(keys: KeyManager, issued: IssuedKey) -> None:
    principal = keys.verify(issued.api_key)
    assert isinstance(principal, Principal)
    assert (principal.tenant_id, principal.key_id, principal.tier, principal.scopes) == (
        "acme-corp",
        issued.record.id,
        "pro",
        (),
    )


# -- the admin key --------------------------------------------------------------


def test_admin_key(tmp_path: Path) -> None:
    configured = hs_settings(tmp_path, admin_key="adm-" + "k" * 40)
    verify_admin_key("adm-" + "k" * 40, configured)
    for wrong in ("", "adm-", "adm-" + "k" * 39, "adm-" + "k" * 41, "ADM-" + "k" * 40, "é"):
        with pytest.raises(AuthenticationError):
            verify_admin_key(wrong, configured)
    with pytest.raises(AuthenticationError, match="TENANTKIT_ADMIN_KEY"):
        verify_admin_key("anything", hs_settings(tmp_path))
    with pytest.raises(AuthenticationError):
        verify_admin_key(None, configured)


def test_keyring_repr_hides_secrets(keys: KeyManager) -> None:
    assert SECRET not in repr(keys.keyring)
    assert SECRET not in repr(keys.keyring.current)


def test_keyring_from_secrets_signs_with_the_first(tmp_path: Path) -> None:
    ring = Keyring.from_secrets("HS256", [SECRET, OTHER_SECRET])
    token = ring.sign({"sub": "a1", "jti": "k", "iat": 0})
    assert jwt.get_unverified_header(token)["kid"] == ring.current.kid
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "a1"
    assert len(ring.kids) == 2


def test_concurrent_verification_and_revocation(database: Database, tmp_path: Path) -> None:
    import threading

    keys = KeyManager(database, hs_settings(tmp_path, auth_cache_ttl=0.001))
    tenants = TenantService(database, keys)
    minted = [tenants.create(f"tenant-{i}", "T", "free")[1] for i in range(10)]
    victim = minted[0]
    revoked = threading.Event()
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for n in range(150):
                key = minted[(offset + n) % len(minted)]
                if key is victim and revoked.is_set():
                    with pytest.raises(AuthenticationError):
                        keys.verify(key.api_key)
                else:
                    try:
                        keys.verify(key.api_key)
                    except AuthenticationError:
                        assert key is victim  # only the victim, racing its revocation
                keys.flush_last_used()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    keys.revoke(victim.record.tenant_id, victim.record.id)
    revoked.set()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with pytest.raises(AuthenticationError):
        keys.verify(victim.api_key)
    assert all(
        r.last_used_at is not None for m in minted[1:] for r in keys.list_keys(m.record.tenant_id)
    )
