"""``import tenantkit`` runs on every Modal cold start: it must stay cheap.

Each check runs in a fresh interpreter and looks at ``sys.modules`` after the
import: no Modal SDK, no web server, no database driver until one is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("modal", "uvicorn", "fastapi", "starlette", "sqlite3", "_sqlite3", "psycopg", "httpx")


def imported_after(statement: str) -> tuple[set[str], str]:
    """Top-level module names loaded by ``statement``, and the -X importtime report."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    return {name.split(".")[0] for name in modules}, done.stderr


@pytest.mark.parametrize(
    "statement",
    [
        "import tenantkit",
        "import tenantkit.auth, tenantkit.tenants, tenantkit.config, tenantkit.errors",
        "import tenantkit.db",
    ],
)
def test_import_loads_no_heavy_module(statement: str) -> None:
    loaded, report = imported_after(statement)
    assert "tenantkit" in loaded
    heavy = sorted(set(HEAVY) & loaded)
    assert heavy == [], f"{statement!r} imported {heavy}"
    assert "import time:" in report


def test_the_check_can_see_a_heavy_import() -> None:
    loaded, _ = imported_after("import tenantkit, sqlite3")
    assert "sqlite3" in loaded
