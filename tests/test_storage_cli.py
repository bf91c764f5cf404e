"""`tenantkit storage ls|du` against a local data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantkit.cli import main
from tenantkit.config import DEFAULT_TIERS, get_settings
from tenantkit.db import Tenant, open_database
from tenantkit.storage import storage_for


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TENANTKIT_DATABASE_URL", raising=False)
    monkeypatch.delenv("TENANTKIT_STORAGE_BACKEND", raising=False)
    settings = get_settings()
    db = open_database(settings.resolved_database_url())
    try:
        with db.transaction() as tx:
            tx.create_tenant(Tenant("acme", "Acme", "free", "active", 0.0, 0.0))
        files = storage_for("acme", DEFAULT_TIERS["free"], settings, db)
        files.write_text("reports/2024-01.json", "{}")
        files.write_text("reports/2024-02.json", "{ }")
        files.write_bytes("image.png", b"\x89PNG")
    finally:
        db.close()
    return tmp_path / "data"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_ls(data_dir: Path) -> None:
    code, output = run("storage", "ls", "--tenant-id", "acme", "--json")
    assert code == 0, output
    data = json.loads(output)
    assert [f["path"] for f in data["files"]] == [
        "image.png",
        "reports/2024-01.json",
        "reports/2024-02.json",
    ]
    code, output = run("storage", "ls", "--tenant-id", "acme", "--prefix", "reports/2024-02")
    assert code == 0
    assert "reports/2024-02.json" in output
    assert "image.png" not in output
    code, output = run("storage", "ls", "--tenant-id", "acme", "--no-recursive", "--json")
    assert [(f["path"], f["type"]) for f in json.loads(output)["files"]] == [
        ("image.png", "file"),
        ("reports", "directory"),
    ]


def test_du_and_fix(data_dir: Path) -> None:
    code, output = run("storage", "du", "--tenant-id", "acme", "--json")
    assert code == 0, output
    data = json.loads(output)
    assert (data["bytes"], data["files"]) == (9, 3)
    assert (data["counted_bytes"], data["counted_files"]) == (9, 3)
    assert data["max_bytes"] == DEFAULT_TIERS["free"].storage_bytes
    assert data["max_files"] == DEFAULT_TIERS["free"].max_files
    (data_dir / "volumes" / "acme" / "dropped-in.txt").write_text("12345")
    code, output = run("storage", "du", "--tenant-id", "acme")
    assert code == 0
    assert "Counters differ" in output
    code, output = run("storage", "du", "--tenant-id", "acme", "--fix", "--json")
    assert json.loads(output)["counted_bytes"] == 9
    code, output = run("storage", "du", "--tenant-id", "acme", "--json")
    assert (json.loads(output)["counted_bytes"], json.loads(output)["counted_files"]) == (14, 4)


def test_errors_are_one_line(data_dir: Path) -> None:
    code, output = run("storage", "ls", "--tenant-id", "nobody")
    assert code == 1
    assert output.strip().startswith("Error: ")
    assert len(output.strip().splitlines()) == 1
    code, output = run("storage", "ls", "--tenant-id", "acme", "--prefix", "../other")
    assert code == 1
    assert "climbs above" in output
    code, output = run("storage", "ls", "--tenant-id", "../x")
    assert code == 1
