"""Signing keys for API keys: HS256 shared secrets and Ed25519 (``EdDSA``) key pairs.

A :class:`Keyring` holds the key that signs new API keys and every key that
still verifies them. Each key has a ``kid`` derived from its material, written
into the JWT header, so a token is checked against exactly one key, and
retiring a key (dropping it from ``previous_signing_keys``) makes its tokens
fail before any database read.

With no signing key configured, :func:`load_keyring` generates one into the
data dir (file mode 0600) and says so once on stderr. It never falls back to
a constant.

Example:
    >>> ring = Keyring.from_secrets("HS256", ["s" * 32])
    >>> token = ring.sign({"sub": "acme-corp", "jti": "key_1", "iat": 0})
    >>> ring.decode(token)["sub"]
    'acme-corp'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tenantkit.config import Settings
from tenantkit.errors import AuthenticationError, ConfigurationError

__all__ = [
    "GENERATED_KEY_FILES",
    "MIN_SECRET_BYTES",
    "Algorithm",
    "Keyring",
    "SigningKey",
    "generate_ed25519_pem",
    "load_keyring",
]

Algorithm = Literal["HS256", "EdDSA"]

MIN_SECRET_BYTES = 32
"""Shortest HS256 secret accepted (RFC 7518 section 3.2)."""

GENERATED_KEY_FILES: Mapping[str, str] = {
    "HS256": "signing-secret",
    "EdDSA": "signing-key-ed25519.pem",
}
"""File names, inside the data dir, of generated local signing keys."""

_KID_LABEL = b"tenantkit signing key id"
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)")
_PEM_MARK = "-----BEGIN"

# Only the checks tenantkit does not do itself: times are checked against the
# key manager's clock, the claims' types by the key manager.
_DECODE_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _canonical_compact(token: str) -> bool:
    """Whether ``token`` is three base64url segments with a canonically encoded signature.

    Base64 decoders ignore the unused low bits of the last character, so
    without this check a signature could be re-spelled and still verify.
    """
    match = _COMPACT_JWS.fullmatch(token)
    if match is None:
        return False
    signature = match.group(1)
    if len(signature) % 4 == 1:
        return False
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    return _b64(raw) == signature


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """One signing key: what signs (if held) and what verifies.

    Attributes:
        kid: Key id, derived from the key material.
        algorithm: ``HS256`` or ``EdDSA``.
        verifier: HMAC secret bytes or an Ed25519 public key.
        signer: HMAC secret bytes or an Ed25519 private key; ``None`` for a
            public key that only verifies.
    """

    kid: str
    algorithm: Algorithm
    verifier: bytes | Ed25519PublicKey
    signer: bytes | Ed25519PrivateKey | None

    def __repr__(self) -> str:  # never show key material
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"

    @classmethod
    def from_secret(cls, secret: str | bytes) -> SigningKey:
        """An HS256 key from a shared secret of at least 32 bytes."""
        raw = secret.encode() if isinstance(secret, str) else secret
        if raw.lstrip().startswith(_PEM_MARK.encode()):
            raise ConfigurationError(
                "the signing key is a PEM key but the JWT algorithm is HS256: "
                "set TENANTKIT_JWT_ALGORITHM=EdDSA, or use a random secret"
            )
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the HS256 signing secret is {len(raw)} bytes; use at least "
                f"{MIN_SECRET_BYTES} (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        kid = _b64(hmac.new(raw, _KID_LABEL, hashlib.sha256).digest()[:12])
        return cls(kid=kid, algorithm="HS256", verifier=raw, signer=raw)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        """An EdDSA key from an Ed25519 private key (signs) or public key (verifies) in PEM."""
        data = pem.encode() if isinstance(pem, str) else pem
        if not data.lstrip().startswith(_PEM_MARK.encode()):
            raise ConfigurationError(
                "the JWT algorithm is EdDSA but the signing key is not a PEM key: "
                "give an Ed25519 private key in PEM form"
            )
        private: Ed25519PrivateKey | None = None
        public: Any
        try:
            if b"PRIVATE KEY" in data:
                loaded = serialization.load_pem_private_key(data, password=None)
                if not isinstance(loaded, Ed25519PrivateKey):
                    raise ConfigurationError("the EdDSA signing key must be an Ed25519 key")
                private = loaded
                public = loaded.public_key()
            else:
                public = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ConfigurationError("the EdDSA signing key is not a readable PEM key") from exc
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigurationError("the EdDSA signing key must be an Ed25519 key")
        raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kid = _b64(hashlib.sha256(_KID_LABEL + raw_public).digest()[:12])
        return cls(kid=kid, algorithm="EdDSA", verifier=public, signer=private)

    @classmethod
    def from_material(cls, algorithm: Algorithm, material: str | bytes) -> SigningKey:
        """A key of ``algorithm`` from a secret (HS256) or a PEM key (EdDSA)."""
        if algorithm == "HS256":
            return cls.from_secret(material)
        return cls.from_pem(material)


class Keyring:
    """The key that signs new tokens and every key that still verifies old ones.

    Args:
        algorithm: The one algorithm tokens may use.
        current: The signing key (must hold private material).
        previous: Keys that verify but never sign.

    Raises:
        ConfigurationError: mixed algorithms, or a current key that cannot sign.
    """

    def __init__(
        self, algorithm: Algorithm, current: SigningKey, previous: Iterable[SigningKey] = ()
    ) -> None:
        keys = [current, *previous]
        for key in keys:
            if key.algorithm != algorithm:
                raise ConfigurationError(
                    f"signing key {key.kid} is an {key.algorithm} key but the algorithm is "
                    f"{algorithm}"
                )
        if current.signer is None:
            raise ConfigurationError("the current signing key has no private part; it cannot sign")
        self.algorithm: Algorithm = algorithm
        self.current = current
        self.keys: dict[str, SigningKey] = {key.kid: key for key in reversed(keys)}
        self._algorithms = [algorithm]
        self._jwt = jwt.PyJWT(options=_DECODE_OPTIONS)

    @classmethod
    def from_secrets(cls, algorithm: Algorithm, materials: Iterable[str | bytes]) -> Keyring:
        """A keyring from key materials, the first one signing."""
        keys = [SigningKey.from_material(algorithm, m) for m in materials]
        if not keys:
            raise ConfigurationError("a keyring needs at least one key")
        return cls(algorithm, keys[0], keys[1:])

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self.keys)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWT of ``claims`` signed with the current key, ``kid`` in its header."""
        signer = self.current.signer
        assert signer is not None
        return jwt.encode(
            dict(claims),
            signer,
            algorithm=self.algorithm,
            headers={"kid": self.current.kid},
        )

    def decode(self, token: str) -> dict[str, Any]:
        """Verify ``token``'s signature and return its claims.

        Checks, in order: well-formed (with a canonical signature), ``alg`` equal to the configured
        algorithm (so ``none`` and HS/EdDSA confusion fail), a known ``kid``,
        then the signature with that one key.

        Raises:
            AuthenticationError: for any failure (the message names the check).
        """
        if not _canonical_compact(token):
            raise AuthenticationError("invalid API key: malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("invalid API key: malformed") from None
        alg = header.get("alg")
        if alg != self.algorithm:
            raise AuthenticationError("invalid API key: unexpected signing algorithm")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise AuthenticationError("invalid API key: unknown or retired signing key")
        try:
            claims = self._jwt.decode(token, key.verifier, algorithms=self._algorithms)
        except jwt.InvalidSignatureError:
            raise AuthenticationError("invalid API key: bad signature") from None
        except jwt.PyJWTError:
            raise AuthenticationError("invalid API key: malformed") from None
        return claims

    def __repr__(self) -> str:
        return f"Keyring({self.algorithm}, current={self.current.kid}, kids={sorted(self.keys)})"


def generate_ed25519_pem() -> str:
    """A new Ed25519 private key in PKCS#8 PEM form."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _read_generated(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigurationError(
            f"the signing key file {path} is readable by others (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )
    return path.read_text(encoding="ascii").strip()


def _generate_local_key(data_dir: Path, algorithm: Algorithm) -> str:
    """Read, or create once, the local signing key in ``data_dir``."""
    path = data_dir / GENERATED_KEY_FILES[algorithm]
    if path.exists():
        return _read_generated(path)
    material = secrets.token_urlsafe(48) if algorithm == "HS256" else generate_ed25519_pem()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = data_dir / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(material + "\n")
        try:
            os.link(tmp, path)  # atomic: another process may have won the race
        except FileExistsError:
            return _read_generated(path)
    finally:
        tmp.unlink(missing_ok=True)
    print(
        f"tenantkit: generated a local {algorithm} signing key at {path} (mode 0600). "
        "Keys it signs stop working if the file is lost; set TENANTKIT_SIGNING_KEY in production.",
        file=sys.stderr,
    )
    return material


def load_keyring(settings: Settings) -> Keyring:
    """The keyring the settings describe.

    ``signing_key`` signs; ``previous_signing_keys`` still verify. With no
    signing key set, a local one is generated once into ``settings.data_dir``.

    Raises:
        ConfigurationError: a key that does not fit the algorithm, or an HS256
            secret under 32 bytes.
    """
    algorithm: Algorithm = settings.jwt_algorithm
    if settings.signing_key is not None and settings.signing_key.get_secret_value().strip():
        material = settings.signing_key.get_secret_value().strip()
    else:
        material = _generate_local_key(settings.data_dir, algorithm)
    current = SigningKey.from_material(algorithm, material)
    previous = [
        SigningKey.from_material(algorithm, key.get_secret_value().strip())
        for key in settings.previous_signing_keys
    ]
    return Keyring(algorithm, current, previous)
