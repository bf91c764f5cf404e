"""The public surface is declared once, sorted, and every name resolves."""

from __future__ import annotations

import pytest

import tenantkit


def test_all_is_unique_and_is_what_dir_shows() -> None:
    assert len(set(tenantkit.__all__)) == len(tenantkit.__all__)
    assert dir(tenantkit) == sorted(tenantkit.__all__)


def test_every_exported_name_resolves() -> None:
    for name in tenantkit.__all__:
        assert getattr(tenantkit, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = tenantkit.NoSuchThing  # type: ignore[attr-defined]


def test_lazy_names_are_the_real_objects() -> None:
    from tenantkit.client import Client
    from tenantkit.gateway import create_gateway

    assert tenantkit.Client is Client
    assert tenantkit.create_gateway is create_gateway
