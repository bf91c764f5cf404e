"""Security properties of API keys, admin keys and tenant lifecycles (no HTTP).

Each test names the protection it proves and would fail without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenantkit.auth import KeyManager, verify_admin_key
from tenantkit.auth import keys as keys_module
from tenantkit.auth.keys import MAX_KEY_LENGTH
from tenantkit.auth.signing import generate_ed25519_pem
from tenantkit.config import Settings, get_settings
from tenantkit.db import Database, open_database
from tenantkit.db.base import ApiKeyRecord, Lease
from tenantkit.errors import AuthenticationError, TenantSuspended, ValidationError
from tenantkit.limits import limiter_key
from tenantkit.storage import files_remover, local_root, remove_tenant_files, storage_for
from tenantkit.tenants import TenantService

SECRET = "security-test-secret-" * 3
ADMIN = "adm-" + "k" * 40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"mt_{signing_input}.{b64(signature)}"


def hs_settings(tmp_path: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "signing_key": SECRET}
    values.update(extra)
    return get_settings(**values)


@pytest.fixture
def db(database: Database) -> Database:
    """The records database: SQLite and PostgreSQL alike (tests/conftest.py)."""
    return database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return hs_settings(tmp_path, admin_key=ADMIN)


@pytest.fixture
def keys(db: Database, settings: Settings) -> KeyManager:
    return KeyManager(db, settings)


@pytest.fixture
def tenants(db: Database, keys: KeyManager, settings: Settings) -> TenantService:
    return TenantService(db, keys, remove_files=files_remover(settings))


def claims_of(api_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = api_key[3:].split(".")
    pad = "=="
    return (
        json.loads(base64.urlsafe_b64decode(header + pad)),
        json.loads(base64.urlsafe_b64decode(payload + pad)),
    )


# -- forged tokens ---------------------------------------------------------------------------


def test_alg_none_is_refused_by_the_algorithm_check(
    tenants: TenantService, keys: KeyManager
) -> None:
    _, issued = tenants.create("acme-corp", "Acme", "free")
    header, claims = claims_of(issued.api_key)
    for alg in ("none", "None", "NONE", ""):
        unsigned = (
            f"{b64(json.dumps({**header, 'alg': alg}).encode())}.{b64(json.dumps(claims).encode())}"
        )
        for token in (f"mt_{unsigned}.", f"mt_{unsigned}.{b64(b'x' * 32)}"):
            with pytest.raises(AuthenticationError):
                keys.verify(token)
        with pytest.raises(AuthenticationError, match="unexpected signing algorithm"):
            keys.verify(f"mt_{unsigned}.{b64(b'x' * 32)}")


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "ES256", "PS256"])
def test_other_algorithms_are_refused_even_with_the_right_secret(
    tenants: TenantService, keys: KeyManager, alg: str
) -> None:
    _, issued = tenants.create("acme-corp", "Acme", "free")
    header, claims = claims_of(issued.api_key)
    token = forge({**header, "alg": alg}, claims, SECRET.encode())
    with pytest.raises(AuthenticationError, match="unexpected signing algorithm"):
        keys.verify(token)


def test_hs256_signed_with_the_eddsa_public_key_is_refused(db: Database, tmp_path: Path) -> None:
    """The classic confusion: HMAC keyed with the (public) verification key."""
    pem = generate_ed25519_pem()
    settings = get_settings(data_dir=tmp_path / "ed", signing_key=pem, jwt_algorithm="EdDSA")
    keys = KeyManager(db, settings)
    tenants = TenantService(db, keys)
    _, issued = tenants.create("acme-corp", "Acme", "free")
    header, claims = claims_of(issued.api_key)
    public = (
        serialization.load_pem_private_key(pem.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    raw_public = (
        serialization.load_pem_private_key(pem.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"
    for material in (public, raw_public, pem.encode()):
        token = forge({**header, "alg": "HS256"}, claims, material)
        with pytest.raises(AuthenticationError, match="unexpected signing algorithm"):
            keys.verify(token)


def test_eddsa_token_from_another_key_pair_is_refused(db: Database, tmp_path: Path) -> None:
    settings = get_settings(
        data_dir=tmp_path / "ed", signing_key=generate_ed25519_pem(), jwt_algorithm="EdDSA"
    )
    keys = KeyManager(db, settings)
    _, issued = TenantService(db, keys).create("acme-corp", "Acme", "free")
    header, claims = claims_of(issued.api_key)
    attacker = Ed25519PrivateKey.generate()
    token = "mt_" + jwt.encode(claims, attacker, algorithm="EdDSA", headers={"kid": header["kid"]})
    with pytest.raises(AuthenticationError, match="bad signature"):
        keys.verify(token)


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/dev/null",
        "evil-kid-file",
        "' OR '1'='1",
        "x'; DROP TABLE api_keys; --",
        "%00",
        "\u0000",
        "k" * 1_000,
        None,
        7,
        ["a"],
        {"$ne": ""},
    ],
)
def test_kid_injection_is_an_unknown_key(
    tenants: TenantService, keys: KeyManager, tmp_path: Path, kid: Any, monkeypatch: Any
) -> None:
    """A kid is looked up in the keyring only: never a file, never a query."""
    _, issued = tenants.create("acme-corp", "Acme", "free")
    header, claims = claims_of(issued.api_key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil-kid-file").write_text("attacker-chosen-secret-" * 3)
    for secret in (b"", b"attacker-chosen-secret-" * 3, b"\x00"):
        token = forge({**header, "kid": kid}, claims, secret)
        expected = "unknown or retired signing key" if isinstance(kid, str) else "malformed"
        with pytest.raises(AuthenticationError, match=expected):
            keys.verify(token)
    with keys.db.transaction(write=False) as tx:  # nothing was dropped or changed
        assert [k.id for k in tx.list_keys("acme-corp")] == [issued.record.id]


def test_claims_swapped_to_another_tenant_fail_the_signature(
    tenants: TenantService, keys: KeyManager
) -> None:
    _, a = tenants.create("tenant-a", "A", "free")
    _, b = tenants.create("tenant-b", "B", "free")
    header_a, _payload_a, signature_a = a.api_key[3:].split(".")
    _, payload_b, _ = b.api_key[3:].split(".")
    with pytest.raises(AuthenticationError, match="bad signature"):
        keys.verify(f"mt_{header_a}.{payload_b}.{signature_a}")
    _, claims_a = claims_of(a.api_key)
    claims_a["sub"] = "tenant-b"
    with pytest.raises(AuthenticationError, match="bad signature"):
        keys.verify(f"mt_{header_a}.{b64(json.dumps(claims_a).encode())}.{signature_a}")


# -- prefix, length ---------------------------------------------------------------------------


def test_prefix_is_required_exactly(tenants: TenantService, keys: KeyManager) -> None:
    _, issued = tenants.create("acme-corp", "Acme", "free")
    token = issued.api_key[3:]
    for variant in (token, "MT_" + token, " " + issued.api_key, "mt_mt_" + token, "mt" + token):
        with pytest.raises(AuthenticationError):
            keys.verify(variant)
    assert keys.verify(issued.api_key).tenant_id == "acme-corp"


def test_overlong_keys_are_refused_before_any_parsing(
    tenants: TenantService, keys: KeyManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, issued = tenants.create("acme-corp", "Acme", "free")
    decoded: list[str] = []
    real_decode = keys.keyring.decode

    def spy(token: str) -> dict[str, Any]:
        decoded.append(token)
        return real_decode(token)

    monkeypatch.setattr(keys.keyring, "decode", spy)
    # A well-formed key of the right shape, only too long: it must not reach the JWT code.
    header, claims = claims_of(issued.api_key)
    claims["pad"] = "x" * (MAX_KEY_LENGTH * 2)
    huge = forge(header, claims, SECRET.encode())
    assert len(huge) > MAX_KEY_LENGTH
    for key in (huge, "mt_" + "A" * 10_000_000):
        with pytest.raises(AuthenticationError, match="invalid API key"):
            keys.verify(key)
        with pytest.raises(AuthenticationError):
            keys.verify_cached(key)
    assert decoded == []
    keys.verify(issued.api_key)
    assert decoded == [issued.api_key[3:]]


def test_a_key_with_the_most_scopes_fits_the_length_bound(
    tenants: TenantService, keys: KeyManager
) -> None:
    tenants.create("acme-corp", "Acme", "free")
    scopes = [f"s{i:02d}:" + "x" * 60 for i in range(32)]
    issued = keys.mint("acme-corp", scopes=scopes)
    assert len(issued.api_key) <= MAX_KEY_LENGTH
    assert keys.verify(issued.api_key).scopes == tuple(scopes)
    with pytest.raises(ValidationError, match="at most 32 scopes"):
        keys.mint("acme-corp", scopes=[*scopes, "one-more"])


# -- lifecycle --------------------------------------------------------------------------------


def test_expired_revoked_and_rotated_keys_are_refused(
    tenants: TenantService, keys: KeyManager, db: Database
) -> None:
    _, first = tenants.create("acme-corp", "Acme", "free")
    short = keys.mint("acme-corp", expires_in=1)
    with db.transaction() as tx:  # make the clock question moot: expire it in the record too
        tx.set_key_revoked(short.record.id, 0.0)
    with pytest.raises(AuthenticationError):
        keys.verify(short.api_key)
    keys.revoke("acme-corp", first.record.id)
    with pytest.raises(AuthenticationError):
        keys.verify(first.api_key)
    second = keys.mint("acme-corp")
    third = keys.rotate("acme-corp", second.record.id)
    with pytest.raises(AuthenticationError):
        keys.verify(second.api_key)
    assert keys.verify(third.api_key).key_id == third.record.id


def test_suspended_tenant_gets_403_and_deleted_tenant_401(
    tenants: TenantService, keys: KeyManager
) -> None:
    _, issued = tenants.create("acme-corp", "Acme", "free")
    keys.verify(issued.api_key)
    tenants.suspend("acme-corp")
    with pytest.raises(TenantSuspended):
        keys.verify(issued.api_key)
    tenants.delete("acme-corp")
    with pytest.raises(AuthenticationError):
        keys.verify(issued.api_key)


def test_old_keys_never_verify_for_a_recreated_tenant_even_with_a_reused_key_id(
    tenants: TenantService, keys: KeyManager, db: Database
) -> None:
    """The token is bound to its key record (creation second and hint), not
    just to the key id: a record that reuses an old key id (a restored backup,
    a collision) does not bring the old token back."""
    _, old = tenants.create("acme-corp", "Acme", "free")
    assert keys.verify(old.api_key).tenant_id == "acme-corp"
    tenants.delete("acme-corp")
    tenants.create("acme-corp", "Acme again", "free")
    with pytest.raises(AuthenticationError):
        keys.verify(old.api_key)
    reused = ApiKeyRecord(
        id=old.record.id,
        tenant_id="acme-corp",
        label="default",
        hint="mt_...zzzz",
        created_at=old.record.created_at + 7,
    )
    with db.transaction() as tx:
        tx.create_key(reused)
    with pytest.raises(AuthenticationError, match="revoked or unknown"):
        keys.verify(old.api_key)
    # Same creation second as the old key, another hint: still refused.
    with db.transaction() as tx:
        tx.delete_tenant("acme-corp")
        tx.create_tenant(_tenant("acme-corp"))
        tx.create_key(
            ApiKeyRecord(
                id=old.record.id,
                tenant_id="acme-corp",
                label="default",
                hint="mt_...zzzz",
                created_at=old.record.created_at,
            )
        )
    keys.invalidate()
    with pytest.raises(AuthenticationError, match="revoked or unknown"):
        keys.verify(old.api_key)


def _tenant(tenant_id: str) -> Any:
    from tenantkit.db.base import Tenant

    return Tenant(tenant_id, "x", "free", "active", 1.0, 1.0)


def test_recreated_tenant_inherits_no_limiter_state_leases_or_files(
    tenants: TenantService, keys: KeyManager, db: Database, settings: Settings
) -> None:
    from tenantkit.config import DEFAULT_TIERS

    tenants.create("acme-corp", "Acme", "free")
    storage = storage_for("acme-corp", DEFAULT_TIERS["free"], settings, db)
    storage.write_text("private/report.txt", "old tenant's data")
    with db.transaction() as tx:
        tx.set_limiter(limiter_key("acme-corp"), 1e12)
        tx.set_limiter(limiter_key("acme-corp") + ":interval", 5.0)
        tx.add_lease(Lease("lease-1", "acme-corp", 0.0, 1e12))
    tenants.delete("acme-corp")
    assert not local_root(settings, "acme-corp").exists()
    tenants.create("acme-corp", "Acme again", "free")
    with db.transaction() as tx:
        assert tx.lock_limiter(limiter_key("acme-corp")) is None
        assert tx.lock_limiter(limiter_key("acme-corp") + ":interval") is None
        assert tx.active_leases("acme-corp", 0.0) == 0
    fresh = storage_for("acme-corp", DEFAULT_TIERS["free"], settings, db)
    assert fresh.list() == []
    assert not fresh.exists("private/report.txt")
    assert fresh.usage() == (0, 0)


def test_files_written_after_the_delete_are_gone_when_the_id_is_reused(
    tenants: TenantService, db: Database, settings: Settings
) -> None:
    """A call still running when its tenant is deleted may write afterwards;
    creating the id again removes what it left."""
    from tenantkit.config import DEFAULT_TIERS

    tenants.create("acme-corp", "Acme", "free")
    lingering = storage_for("acme-corp", DEFAULT_TIERS["free"], settings, None)
    tenants.delete("acme-corp")
    lingering.write_text("late.txt", "written by a call that outlived its tenant")
    assert (local_root(settings, "acme-corp") / "late.txt").exists()
    tenants.create("acme-corp", "Acme again", "free")
    assert not local_root(settings, "acme-corp").exists()


def test_create_of_an_existing_tenant_keeps_its_files(
    tenants: TenantService, db: Database, settings: Settings
) -> None:
    from tenantkit.config import DEFAULT_TIERS
    from tenantkit.errors import TenantAlreadyExists

    tenants.create("acme-corp", "Acme", "free")
    storage_for("acme-corp", DEFAULT_TIERS["free"], settings, db).write_text("keep.txt", "mine")
    with pytest.raises(TenantAlreadyExists):
        tenants.create("acme-corp", "Impostor", "free")
    assert (local_root(settings, "acme-corp") / "keep.txt").read_text() == "mine"


def test_file_removal_takes_links_and_foreign_entries_without_following_them(
    tmp_path: Path, settings: Settings
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the tenant's")
    root = local_root(settings, "acme-corp")
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "weird\\name").write_text("b")
    os.symlink(outside, root / "link")
    os.symlink(outside / "keep.txt", root / "sub" / "file-link")
    removed = remove_tenant_files("acme-corp", settings)
    assert removed.files >= 1
    assert not root.exists()
    assert (outside / "keep.txt").read_text() == "not the tenant's"
    assert [p.name for p in root.parent.iterdir()] == []


def test_a_symlinked_tenant_root_is_unlinked_not_followed(
    tmp_path: Path, settings: Settings
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the tenant's")
    root = local_root(settings, "acme-corp")
    root.parent.mkdir(parents=True)
    os.symlink(outside, root)
    remove_tenant_files("acme-corp", settings)
    assert not root.is_symlink()
    assert (outside / "keep.txt").exists()


def test_modal_backend_needs_the_app_name_to_remove_files(tmp_path: Path) -> None:
    settings = hs_settings(tmp_path, storage_backend="modal")
    assert files_remover(settings) is None
    assert files_remover(settings, app_name="demo") is not None


# -- admin key --------------------------------------------------------------------------------


def test_admin_key_is_compared_in_constant_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    verify_admin_key(ADMIN, settings)
    with pytest.raises(AuthenticationError):
        verify_admin_key(ADMIN[:-1], settings)
    assert len(calls) == 2
    # Equal-length digests: the time does not depend on how long the guess is.
    assert all(len(a) == len(b) == 32 for a, b in calls)


@pytest.mark.parametrize(
    "presented", ["", None, ADMIN[:-1], ADMIN + "x", ADMIN.upper(), " " + ADMIN]
)
def test_admin_key_refuses_near_misses(settings: Settings, presented: str | None) -> None:
    with pytest.raises(AuthenticationError):
        verify_admin_key(presented, settings)


def test_a_tenant_key_is_never_an_admin_key(tenants: TenantService, settings: Settings) -> None:
    _, issued = tenants.create("acme-corp", "Acme", "free")
    with pytest.raises(AuthenticationError, match="invalid admin key"):
        verify_admin_key(issued.api_key, settings)


def test_a_short_configured_admin_key_disables_admin_access(tmp_path: Path) -> None:
    weak = hs_settings(tmp_path, admin_key="admin")
    with pytest.raises(AuthenticationError, match="shorter than"):
        verify_admin_key("admin", weak)


def test_no_secret_is_compared_with_equality_operators() -> None:
    """Grep: secrets (keys, hints, digests) are compared with hmac.compare_digest only."""
    root = Path(keys_module.__file__).parents[1]
    offenders = []
    pattern = re.compile(
        r"(admin_key|api_key|signing_key|secret|token|hint|digest)\w*\s*(==|!=)\s*\w"
        r"|\w\s*(==|!=)\s*\w*(admin_key|api_key|signing_key|secret|hint)\b"
    )
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and "len(" not in code and "is None" not in code:
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []


# -- storage of keys and secrets --------------------------------------------------------------


def test_no_record_holds_a_key_or_its_signature(
    tenants: TenantService, keys: KeyManager, db: Database, tmp_path: Path
) -> None:
    _, first = tenants.create("acme-corp", "Acme", "free", "ops@acme.test")
    issued = [first, keys.mint("acme-corp", label="ci"), keys.rotate("acme-corp", grace=60)]
    keys.revoke("acme-corp", issued[1].record.id)
    keys.verify(issued[0].api_key)
    keys.verify(issued[2].api_key)
    keys.flush_last_used()
    with db.transaction(write=False) as tx:
        rows = repr(list(tx.export_rows()))
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("records.db"))
    for key in issued:
        _header, payload, signature = key.api_key[3:].split(".")
        for part in (key.api_key, signature, payload, signature[:-4]):
            assert part not in rows
            assert part.encode() not in files


def test_generated_signing_secret_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        settings = get_settings(data_dir=tmp_path / "data")
        KeyManager(open_database("sqlite:///:memory:"), settings).keyring  # noqa: B018
    finally:
        os.umask(old)
    secret = tmp_path / "data" / "signing-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_sqlite_records_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        database = open_database(f"sqlite:///{tmp_path / 'r.db'}")
        with database.transaction() as tx:
            tx.create_tenant(_tenant("acme-corp"))
        companions = [p for p in tmp_path.iterdir() if p.name.startswith("r.db")]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in companions}
        database.close()
    finally:
        os.umask(old)
    assert "r.db-wal" in modes  # WAL mode: the journal holds records too
    assert set(modes.values()) == {0o600}, modes


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300, -1.0, 0])
def test_expiry_and_grace_must_be_finite_and_sane(
    tenants: TenantService, keys: KeyManager, value: float
) -> None:
    """An infinite expiry once crashed minting (a 500); an infinite grace kept a
    rotated key alive for ever."""
    _, issued = tenants.create("acme-corp", "Acme", "free")
    with pytest.raises(ValidationError, match="expires_in"):
        keys.mint("acme-corp", expires_in=value)
    if value != 0:
        with pytest.raises(ValidationError, match="grace"):
            keys.rotate("acme-corp", grace=value)
    assert keys.verify(issued.api_key).key_id == issued.record.id


def test_a_failed_file_removal_names_no_server_path(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The message can reach an admin API client: the folder is named in the log only."""
    import shutil

    from tenantkit.storage import StorageUnavailable

    root = local_root(settings, "acme-corp")
    root.mkdir(parents=True)
    (root / "a.txt").write_text("a")

    def fail(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", fail)
    with pytest.raises(StorageUnavailable) as raised:
        remove_tenant_files("acme-corp", settings)
    assert str(settings.data_dir) not in str(raised.value)
    assert "acme-corp" in str(raised.value)
    assert str(settings.data_dir) in caplog.text
    assert not root.exists()  # out of the tenant's reach all the same


def test_by_default_only_the_settings_own_database_removes_their_files(
    tmp_path: Path, settings: Settings
) -> None:
    """A service over another database (an in-memory one, a test's) must not
    delete the files of the tenants the settings' database knows."""
    from tenantkit.storage import FilesRemover

    root = local_root(settings, "acme-corp")
    root.mkdir(parents=True)
    (root / "keep.txt").write_text("belongs to the real acme-corp")
    other = open_database("sqlite:///:memory:")
    service = TenantService(other, KeyManager(other, settings))
    assert service.remove_files is None
    service.create("acme-corp", "Test double", "free")
    service.delete("acme-corp")
    assert (root / "keep.txt").exists()
    other.close()
    own = open_database(settings.resolved_database_url())
    assert isinstance(TenantService(own, KeyManager(own, settings)).remove_files, FilesRemover)
    own.close()


def test_tenant_files_and_folders_are_private(tmp_path: Path, settings: Settings) -> None:
    from tenantkit.config import DEFAULT_TIERS

    old = os.umask(0)
    try:
        storage = storage_for("acme-corp", DEFAULT_TIERS["free"], settings, None)
        storage.write_text("reports/q1.txt", "numbers")
    finally:
        os.umask(old)
    root = local_root(settings, "acme-corp")
    for path in (root.parent, root, root / "reports"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE((root / "reports" / "q1.txt").stat().st_mode) == 0o600
