"""Settings and the tier table: the only module that reads the environment.

Every setting is read from ``TENANTKIT_<NAME>`` (and from a ``.env`` file in
the working directory). The seed's ``JWT_SECRET_KEY`` and ``JWT_ALGORITHM``
are honoured as well, so its ``modal secret create jwt-secret ...`` step keeps
working.

Example:
    >>> from tenantkit.config import DEFAULT_TIERS
    >>> DEFAULT_TIERS["free"].requests_per_hour
    100
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenantkit.errors import ConfigurationError, InvalidTenantId, UnknownTier

__all__ = [
    "DEFAULT_TIERS",
    "TENANT_ID_PATTERN",
    "Settings",
    "Tier",
    "get_settings",
    "resolve_tier",
    "validate_tenant_id",
]

GB = 1_000_000_000

TENANT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def validate_tenant_id(tenant_id: object) -> str:
    """Return ``tenant_id`` if it is a valid tenant id, else raise.

    A tenant id is 2 to 63 characters of lowercase letters, digits and ``-``,
    starting with a letter or digit: safe as a path component, a Modal Volume
    name part and a database key.

    Raises:
        InvalidTenantId: with a message saying what the rule is.

    Example:
        >>> validate_tenant_id("acme-corp")
        'acme-corp'
    """
    if not isinstance(tenant_id, str) or TENANT_ID_PATTERN.fullmatch(tenant_id) is None:
        shown = repr(tenant_id if len(str(tenant_id)) <= 70 else f"{str(tenant_id)[:67]}...")
        raise InvalidTenantId(
            f"invalid tenant id {shown}: use 2-63 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return tenant_id


@dataclass(frozen=True, slots=True)
class Tier:
    """What a tier allows.

    Attributes:
        name: Tier name, e.g. ``"free"``.
        requests_per_hour: Sustained request rate.
        burst: Requests admitted back to back from idle.
        max_concurrent: Calls in flight at once.
        compute_seconds_per_day: Compute quota per UTC day.
        storage_bytes: Storage quota in bytes.
        max_files: File count quota.
    """

    name: str
    requests_per_hour: int
    burst: int
    max_concurrent: int
    compute_seconds_per_day: float
    storage_bytes: int
    max_files: int

    def __post_init__(self) -> None:
        for field in (
            "requests_per_hour",
            "burst",
            "max_concurrent",
            "compute_seconds_per_day",
            "storage_bytes",
            "max_files",
        ):
            if getattr(self, field) <= 0:
                raise ConfigurationError(f"tier {self.name!r}: {field} must be positive")


DEFAULT_TIERS: Mapping[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier("free", 100, 20, 5, 3_600, 1 * GB, 1_000),
        Tier("pro", 1_000, 100, 20, 36_000, 50 * GB, 100_000),
        Tier("enterprise", 10_000, 500, 100, 360_000, 500 * GB, 1_000_000),
    )
}


def resolve_tier(name: str, tiers: Mapping[str, Tier] = DEFAULT_TIERS) -> Tier:
    """Look a tier up by name.

    Raises:
        UnknownTier: naming the tiers that exist.
    """
    try:
        return tiers[name]
    except KeyError:
        known = ", ".join(sorted(tiers))
        raise UnknownTier(f"unknown tier {name!r}: choose one of {known}") from None


class Settings(BaseSettings):
    """tenantkit's settings, from ``TENANTKIT_*`` environment variables.

    Attributes:
        data_dir: Folder for local state (SQLite file, generated secret, volumes).
        database_url: ``sqlite:///path`` or ``postgresql://...``; defaults to
            ``sqlite:///<data_dir>/tenantkit.db``.
        signing_key: HS256 secret or Ed25519 private key (PEM). Also read from
            ``JWT_SECRET_KEY``.
        previous_signing_keys: Keys that still verify (but never sign) during a
            signing-key rotation. Drop one from the list to retire it.
        jwt_algorithm: ``HS256`` or ``EdDSA``. Also read from ``JWT_ALGORITHM``.
        admin_key: Bearer key for ``/admin`` routes and remote CLI use.
        key_prefix: Prefix of API keys.
        auth_cache_ttl: Seconds a verified key record is trusted before it is
            read again (revocation in the same process is immediate).
        prices: Price table for cost estimates, as JSON in ``TENANTKIT_PRICES``
            (keys of ``tenantkit.metering.PriceTable.from_mapping``); omitted
            prices keep their defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix="TENANTKIT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Path(".tenantkit")
    database_url: str | None = None
    signing_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TENANTKIT_SIGNING_KEY", "JWT_SECRET_KEY")
    )
    previous_signing_keys: list[SecretStr] = Field(default_factory=list)
    jwt_algorithm: Literal["HS256", "EdDSA"] = Field(
        default="HS256", validation_alias=AliasChoices("TENANTKIT_JWT_ALGORITHM", "JWT_ALGORITHM")
    )
    admin_key: SecretStr | None = None
    key_prefix: str = "mt_"
    auth_cache_ttl: float = Field(default=1.0, ge=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_batch_tasks: int = Field(default=100, gt=0)
    rate_limit_fail_open: bool = False
    usage_flush_interval: float = Field(default=0.5, gt=0)
    usage_buffer_size: int = Field(default=10_000, gt=0)
    usage_retention_days: int = Field(default=90, gt=0)
    storage_backend: Literal["local", "modal"] = "local"
    prices: dict[str, Any] = Field(default_factory=dict)
    url: str | None = None

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tenantkit.db'}"


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with keyword overrides.

    Raises:
        ConfigurationError: a setting has a value it cannot take; one line
            naming each such setting.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{_setting_name(error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error's location stands for."""
    name = str(loc[0]) if loc else "?"
    if not name.isupper():
        name = f"TENANTKIT_{name.upper()}"
    return name
