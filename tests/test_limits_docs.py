"""The examples in the limits and metering docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tenantkit.limits.gcra",
    "tenantkit.limits.headers",
    "tenantkit.limits.admission",
    "tenantkit.metering.meter",
    "tenantkit.metering.report",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
