"""Signing keys: loading from settings, kid derivation, the generated local secret."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tenantkit.auth.signing import (
    GENERATED_KEY_FILES,
    Keyring,
    SigningKey,
    generate_ed25519_pem,
    load_keyring,
)
from tenantkit.config import get_settings
from tenantkit.errors import AuthenticationError, ConfigurationError

SECRET = "0123456789abcdef" * 3


def test_kid_is_derived_from_key_material() -> None:
    a1 = SigningKey.from_secret(SECRET)
    a2 = SigningKey.from_secret(SECRET.encode())
    b = SigningKey.from_secret(SECRET + "x")
    assert a1.kid == a2.kid
    assert a1.kid != b.kid
    assert SECRET not in a1.kid
    pem = generate_ed25519_pem()
    e1, e2 = SigningKey.from_pem(pem), SigningKey.from_pem(pem.encode())
    assert e1.kid == e2.kid
    assert e1.kid != SigningKey.from_pem(generate_ed25519_pem()).kid


def test_public_pem_verifies_what_its_private_key_signed() -> None:
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signer = SigningKey.from_pem(private_pem)
    verifier = SigningKey.from_pem(public_pem)
    assert signer.kid == verifier.kid
    assert verifier.signer is None
    token = Keyring("EdDSA", signer).sign({"sub": "a1", "jti": "k", "iat": 0})
    current = SigningKey.from_pem(generate_ed25519_pem())
    assert Keyring("EdDSA", current, [verifier]).decode(token)["sub"] == "a1"
    with pytest.raises(ConfigurationError, match="cannot sign"):
        Keyring("EdDSA", verifier)


@pytest.mark.parametrize(
    ("algorithm", "material", "message"),
    [
        ("HS256", "short", "at least 32"),
        ("HS256", "", "at least 32"),
        ("HS256", "PLACEHOLDER_PEM", "PEM key but the JWT algorithm is HS256"),
        ("EdDSA", SECRET, "not a PEM key"),
        ("EdDSA", "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----", "readable"),
    ],
)
def test_bad_key_material(algorithm: str, material: str, message: str) -> None:
    if material == "PLACEHOLDER_PEM":
        material = generate_ed25519_pem()
    with pytest.raises(ConfigurationError, match=message):
        SigningKey.from_material(algorithm, material)  # type: ignore[arg-type]


def test_keyring_refuses_mixed_algorithms() -> None:
    with pytest.raises(ConfigurationError, match="algorithm"):
        Keyring(
            "HS256", SigningKey.from_secret(SECRET), [SigningKey.from_pem(generate_ed25519_pem())]
        )


def test_load_keyring_from_settings(tmp_path: Path) -> None:
    old = "previous-secret-" * 3
    settings = get_settings(data_dir=tmp_path, signing_key=SECRET, previous_signing_keys=[old])
    ring = load_keyring(settings)
    assert ring.algorithm == "HS256"
    assert ring.current.kid == SigningKey.from_secret(SECRET).kid
    assert ring.kids == {SigningKey.from_secret(SECRET).kid, SigningKey.from_secret(old).kid}
    assert not list(tmp_path.iterdir())  # nothing generated when a key is configured


def test_seed_environment_names_are_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    ring = load_keyring(get_settings(data_dir=tmp_path / "d"))
    assert ring.current.kid == SigningKey.from_secret(SECRET).kid


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
def test_generated_local_key(
    tmp_path: Path, algorithm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    settings = get_settings(data_dir=data_dir, jwt_algorithm=algorithm)
    first = load_keyring(settings)
    path = data_dir / GENERATED_KEY_FILES[algorithm]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    err = capsys.readouterr().err
    assert "generated" in err
    assert str(path) in err
    assert path.read_text().strip() not in err  # never print the secret itself
    second = load_keyring(settings)
    assert second.current.kid == first.current.kid
    assert capsys.readouterr().err == ""  # said once
    token = first.sign({"sub": "a1", "jti": "k", "iat": 0})
    assert second.decode(token)["jti"] == "k"
    assert [p.name for p in data_dir.iterdir()] == [path.name]  # no temp files left


def test_generated_secrets_differ_between_data_dirs(tmp_path: Path) -> None:
    a = load_keyring(get_settings(data_dir=tmp_path / "a"))
    b = load_keyring(get_settings(data_dir=tmp_path / "b"))
    assert a.current.kid != b.current.kid
    token = a.sign({"sub": "a1", "jti": "k", "iat": 0})
    with pytest.raises(AuthenticationError):
        b.decode(token)


def test_world_readable_generated_key_is_refused(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    load_keyring(settings)
    path = tmp_path / GENERATED_KEY_FILES["HS256"]
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keyring(settings)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    code = (
        "import sys; from tenantkit.auth.signing import load_keyring;"
        "from tenantkit.config import get_settings;"
        "print(load_keyring(get_settings(data_dir=sys.argv[1])).current.kid)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    kids = {out.strip() for out, _ in results}
    assert len(kids) == 1
    announcements = sum("generated" in err for _, err in results)
    assert announcements == 1


def test_decode_names_the_failed_check() -> None:
    ring = Keyring.from_secrets("HS256", [SECRET])
    good = ring.sign({"sub": "a1", "jti": "k", "iat": 0})
    cases = {
        "malformed": "not.a.jwt!",
        "algorithm": jwt.encode({"sub": "a1"}, Ed25519PrivateKey.generate(), algorithm="EdDSA"),
        "malformed: none": jwt.encode({"sub": "a1"}, None, algorithm="none"),
        "retired": jwt.encode({"sub": "a1"}, SECRET, algorithm="HS256", headers={"kid": "x"}),
        "bad signature": good[:-2] + ("AA" if good[-2:] != "AA" else "BA"),
    }
    for message, token in cases.items():
        with pytest.raises(AuthenticationError, match=message.split(":")[0]):
            ring.decode(token)
