"""API keys and the keys that sign them.

:class:`KeyManager` mints, verifies, revokes and rotates tenants' API keys;
:class:`~tenantkit.auth.signing.Keyring` holds the HS256 or Ed25519 signing
keys; :func:`verify_admin_key` guards the admin API.
"""

from __future__ import annotations

from tenantkit.auth.keys import IssuedKey, KeyManager, Principal, verify_admin_key
from tenantkit.auth.signing import Keyring, SigningKey, load_keyring

__all__ = [
    "IssuedKey",
    "KeyManager",
    "Keyring",
    "Principal",
    "SigningKey",
    "load_keyring",
    "verify_admin_key",
]
