"""Settings, tiers and the tenant id rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from tenantkit.config import (
    DEFAULT_TIERS,
    GB,
    TENANT_ID_PATTERN,
    Settings,
    Tier,
    get_settings,
    resolve_tier,
    validate_tenant_id,
)
from tenantkit.errors import ConfigurationError, InvalidTenantId, UnknownTier

RULE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TENANTKIT_* or seed variables, and no .env file, leak into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("TENANTKIT_") or name in {"JWT_SECRET_KEY", "JWT_ALGORITHM"}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_default_tiers_are_the_seeds_table() -> None:
    expected = {
        "free": (100, 20, 5, 3_600, 1 * GB, 1_000),
        "pro": (1_000, 100, 20, 36_000, 50 * GB, 100_000),
        "enterprise": (10_000, 500, 100, 360_000, 500 * GB, 1_000_000),
    }
    actual = {
        name: (
            t.requests_per_hour,
            t.burst,
            t.max_concurrent,
            t.compute_seconds_per_day,
            t.storage_bytes,
            t.max_files,
        )
        for name, t in DEFAULT_TIERS.items()
    }
    assert actual == expected
    assert all(name == tier.name for name, tier in DEFAULT_TIERS.items())


def test_tier_values_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="burst"):
        Tier("x", 10, 0, 1, 1, 1, 1)
    with pytest.raises(ConfigurationError, match="requests_per_hour"):
        Tier("x", -1, 1, 1, 1, 1, 1)


def test_resolve_tier() -> None:
    assert resolve_tier("pro") is DEFAULT_TIERS["pro"]
    custom = {"gold": Tier("gold", 1, 1, 1, 1, 1, 1)}
    assert resolve_tier("gold", custom).name == "gold"
    with pytest.raises(UnknownTier, match="enterprise, free, pro"):
        resolve_tier("gold")


def test_defaults() -> None:
    settings = get_settings()
    assert settings.data_dir == Path(".tenantkit")
    assert settings.resolved_database_url() == "sqlite:///.tenantkit/tenantkit.db"
    assert settings.signing_key is None
    assert settings.jwt_algorithm == "HS256"
    assert settings.key_prefix == "mt_"
    assert settings.admin_key is None
    assert settings.auth_cache_ttl == 1.0


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TENANTKIT_SIGNING_KEY", "a" * 40)
    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", "admin-key")
    monkeypatch.setenv("TENANTKIT_AUTH_CACHE_TTL", "2.5")
    monkeypatch.setenv("TENANTKIT_PREVIOUS_SIGNING_KEYS", '["' + "b" * 40 + '"]')
    settings = Settings()
    assert settings.data_dir == tmp_path / "state"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'state' / 'tenantkit.db'}"
    assert settings.signing_key is not None
    assert settings.signing_key.get_secret_value() == "a" * 40
    assert [k.get_secret_value() for k in settings.previous_signing_keys] == ["b" * 40]
    assert settings.auth_cache_ttl == 2.5
    # secrets do not show in reprs or logs
    assert "a" * 40 not in repr(settings)
    assert "admin-key" not in repr(settings)


def test_seed_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", "seed-" * 8)
    monkeypatch.setenv("JWT_ALGORITHM", "EdDSA")
    settings = Settings()
    assert settings.signing_key is not None
    assert settings.signing_key.get_secret_value() == "seed-" * 8
    assert settings.jwt_algorithm == "EdDSA"


def test_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TENANTKIT_KEY_PREFIX=sk_\n")
    assert Settings().key_prefix == "sk_"


def test_explicit_database_url_wins() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    assert get_settings(database_url=url).resolved_database_url() == url


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="TENANTKIT_JWT_ALGORITHM") as caught:
        get_settings(jwt_algorithm="RS256")
    assert isinstance(caught.value.__cause__, PydanticValidationError)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_body_bytes", "-1"),
        ("max_batch_tasks", "0"),
        ("usage_flush_interval", "0"),
        ("usage_buffer_size", "0"),
        ("usage_retention_days", "0"),
        ("auth_cache_ttl", "-1"),
        ("max_body_bytes", "lots"),
    ],
)
def test_a_bad_environment_value_is_one_configuration_error(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"TENANTKIT_{name.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"^invalid settings: {variable}: "):
        get_settings()


@given(st.from_regex(RULE, fullmatch=True))
def test_valid_tenant_ids(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


@given(st.one_of(st.text(max_size=100), st.binary(max_size=10), st.integers(), st.none()))
def test_invalid_tenant_ids(value: object) -> None:
    if isinstance(value, str) and RULE.fullmatch(value):
        assert validate_tenant_id(value) == value
        return
    with pytest.raises(InvalidTenantId, match="2-63 lowercase"):
        validate_tenant_id(value)


@pytest.mark.parametrize(
    "tenant_id",
    [
        "",
        "a",
        "-acme",
        "Acme",
        "acme_corp",
        "acme.corp",
        "acme:corp",
        "../x",
        "a/b",
        "acme corp",
        "a" * 64,
        "acme\n",
        "\uff41\uff43\uff4d\uff45",  # fullwidth "acme"
    ],
)
def test_tenant_id_examples_rejected(tenant_id: str) -> None:
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(tenant_id)
    assert TENANT_ID_PATTERN.fullmatch(tenant_id) is None


@pytest.mark.parametrize("tenant_id", ["ab", "acme-corp", "0day", "a" * 63, "a-"])
def test_tenant_id_examples_accepted(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id
