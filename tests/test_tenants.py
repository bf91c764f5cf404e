"""TenantService: the tenant lifecycle on both database backends."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.auth import KeyManager
from tenantkit.config import DEFAULT_TIERS, Tier, get_settings
from tenantkit.db import Database
from tenantkit.errors import (
    AuthenticationError,
    InvalidTenantId,
    TenantAlreadyExists,
    TenantNotFound,
    TenantSuspended,
    UnknownTier,
    ValidationError,
)
from tenantkit.tenants import TenantService

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(database: Database, tmp_path: Path, clock: Clock) -> TenantService:
    keys = KeyManager(database, get_settings(data_dir=tmp_path, signing_key="k" * 40), clock=clock)
    return TenantService(database, keys, clock=clock)


def test_create_returns_tenant_and_a_working_key(service: TenantService) -> None:
    tenant, issued = service.create("acme-corp", " Acme Corporation ", "pro", "admin@acme.com")
    assert tenant.id == "acme-corp"
    assert tenant.name == "Acme Corporation"
    assert (tenant.tier, tenant.status, tenant.email) == ("pro", "active", "admin@acme.com")
    assert tenant.created_at == tenant.updated_at == T0
    assert service.get("acme-corp") == tenant
    assert service.keys.verify(issued.api_key).tenant == tenant
    assert issued.record.tenant_id == "acme-corp"


def test_create_is_all_or_nothing(service: TenantService) -> None:
    service.create("acme-corp", "Acme", "pro")
    with pytest.raises(TenantAlreadyExists):
        service.create("acme-corp", "Acme again", "free")
    assert service.get("acme-corp").name == "Acme"
    assert len(service.keys.list_keys("acme-corp")) == 1  # no stray key from the failed create


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("Acme_Corp", "Acme", "pro"), InvalidTenantId),
        (("../etc", "Acme", "pro"), InvalidTenantId),
        (("acme:corp", "Acme", "pro"), InvalidTenantId),
        (("a", "Acme", "pro"), InvalidTenantId),
        (("acme-corp", "Acme", "platinum"), UnknownTier),
        (("acme-corp", "  ", "pro"), ValidationError),
        (("acme-corp", "x" * 201, "pro"), ValidationError),
        (("acme-corp", "Acme", "pro", "not-an-email"), ValidationError),
        (("acme-corp", "Acme", "pro", "a@b"), ValidationError),
        (("acme-corp", "Acme", "pro", "a b@c.com"), ValidationError),
    ],
)
def test_create_validates(service: TenantService, args: tuple[str, ...], error: type) -> None:
    with pytest.raises(error):
        service.create(*args)
    assert service.count() == 0


def test_unknown_tier_names_the_choices(service: TenantService) -> None:
    with pytest.raises(UnknownTier, match="enterprise, free, pro"):
        service.create("acme-corp", "Acme", "gold")


def test_custom_tiers(database: Database, tmp_path: Path) -> None:
    tiers = {**DEFAULT_TIERS, "gold": Tier("gold", 5, 1, 1, 10, 10, 10)}
    keys = KeyManager(database, get_settings(data_dir=tmp_path, signing_key="k" * 40))
    service = TenantService(database, keys, tiers=tiers)
    tenant, _ = service.create("acme-corp", "Acme", "gold")
    assert service.tier_of(tenant).requests_per_hour == 5
    assert TenantService(database, keys).get("acme-corp").tier == "gold"
    with pytest.raises(UnknownTier):
        TenantService(database, keys).tier_of(tenant)


def test_get_unknown_and_invalid(service: TenantService) -> None:
    with pytest.raises(TenantNotFound):
        service.get("nobody-here")
    with pytest.raises(InvalidTenantId):
        service.get("Nobody Here")


def test_list_is_paginated_by_id(service: TenantService) -> None:
    ids = [f"tenant-{i:03d}" for i in range(25)]
    for tenant_id in reversed(ids):
        service.create(tenant_id, "T", "free")
    seen: list[str] = []
    after = None
    while True:
        page = service.list(limit=10, after=after)
        seen += [t.id for t in page]
        if len(page) < 10:
            break
        after = page[-1].id
    assert seen == ids
    assert service.count() == 25
    with pytest.raises(ValidationError):
        service.list(limit=0)
    with pytest.raises(ValidationError):
        service.list(limit=1001)


def test_tier_change_keeps_the_key(service: TenantService, clock: Clock) -> None:
    _, issued = service.create("acme-corp", "Acme", "free")
    clock.now += 10
    upgraded = service.change_tier("acme-corp", "enterprise")
    assert upgraded.tier == "enterprise"
    assert upgraded.updated_at == T0 + 10
    assert service.keys.verify(issued.api_key).tier == "enterprise"
    assert service.tier_of(upgraded) == DEFAULT_TIERS["enterprise"]
    with pytest.raises(UnknownTier):
        service.change_tier("acme-corp", "gold")
    with pytest.raises(TenantNotFound):
        service.change_tier("nobody-here", "pro")


def test_suspend_and_resume(service: TenantService) -> None:
    _, issued = service.create("acme-corp", "Acme", "pro")
    suspended = service.suspend("acme-corp", "unpaid invoice")
    assert (suspended.status, suspended.suspended_reason) == ("suspended", "unpaid invoice")
    assert not suspended.active
    with pytest.raises(TenantSuspended):
        service.keys.verify(issued.api_key)
    resumed = service.resume("acme-corp")
    assert (resumed.status, resumed.suspended_reason) == ("active", None)
    assert service.keys.verify(issued.api_key).tenant_id == "acme-corp"
    with pytest.raises(TenantNotFound):
        service.suspend("nobody-here")
    with pytest.raises(ValidationError):
        service.suspend("acme-corp", "x" * 501)


def test_delete(service: TenantService) -> None:
    _, issued = service.create("acme-corp", "Acme", "pro")
    service.keys.verify(issued.api_key)
    service.delete("acme-corp")
    with pytest.raises(TenantNotFound):
        service.get("acme-corp")
    with pytest.raises(AuthenticationError):
        service.keys.verify(issued.api_key)
    with pytest.raises(TenantNotFound):
        service.delete("acme-corp")


def test_every_change_is_audited_without_personal_data(service: TenantService) -> None:
    _, issued = service.create("acme-corp", "Acme", "pro", "admin@acme.com", actor="ops")
    service.change_tier("acme-corp", "enterprise", actor="ops")
    service.suspend("acme-corp", "unpaid", actor="ops")
    service.resume("acme-corp", actor="ops")
    service.keys.revoke("acme-corp", issued.record.id, actor="ops")
    service.delete("acme-corp", actor="ops")
    with service.db.transaction(write=False) as tx:
        entries = tx.audit_entries("acme-corp")
    actions = sorted(e.action for e in entries)
    assert actions == sorted(
        [
            "tenant.create",
            "key.create",
            "tenant.tier",
            "tenant.suspend",
            "tenant.resume",
            "key.revoke",
            "tenant.delete",
        ]
    )
    assert all(e.actor == "ops" for e in entries)
    tier = next(e for e in entries if e.action == "tenant.tier")
    assert tier.detail == {"from": "pro", "to": "enterprise"}
    suspend = next(e for e in entries if e.action == "tenant.suspend")
    assert suspend.detail["reason"] == "unpaid"
    assert "admin@acme.com" not in repr(entries)
    assert issued.api_key not in repr(entries)


valid_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{1,62}", fullmatch=True)
invalid_ids = st.one_of(
    st.text(max_size=80).filter(lambda s: not _valid(s)),
    st.from_regex(r"[a-z0-9][a-z0-9-]{63,80}", fullmatch=True),
    st.from_regex(r"-[a-z0-9-]{1,20}", fullmatch=True),
)


def _valid(text: str) -> bool:
    import re

    return re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}", text) is not None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tenant_id=invalid_ids)
def test_every_invalid_tenant_id_is_rejected(service: TenantService, tenant_id: str) -> None:
    with pytest.raises(InvalidTenantId):
        service.create(tenant_id, "T", "free")
    with pytest.raises(InvalidTenantId):
        service.get(tenant_id)
    with pytest.raises(InvalidTenantId):
        service.keys.mint(tenant_id)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tenant_id=valid_ids)
def test_every_valid_tenant_id_is_accepted(service: TenantService, tenant_id: str) -> None:
    with contextlib.suppress(TenantAlreadyExists):
        service.create(tenant_id, "T", "free")
    assert service.get(tenant_id).id == tenant_id
