"""CLI security: where the admin key may be sent, and tenant deletion's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantkit.cli import main
from tenantkit.cli._target import RemoteTarget, open_target
from tenantkit.config import get_settings
from tenantkit.errors import ConfigurationError

ADMIN = "adm-" + "k" * 40


@pytest.mark.parametrize(
    "url",
    [
        "http://tenants.example.com",
        "http://10.0.0.5:8000",
        "http://localhost.example.com",
        "ftp://example.com",
        "https://user:pass@example.com",
        "example.com",
        "https://",
    ],
)
def test_the_admin_key_is_never_sent_in_clear_or_to_odd_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RemoteTarget(url, ADMIN)
    with pytest.raises(ConfigurationError):
        open_target(url, settings=get_settings(admin_key=ADMIN))


@pytest.mark.parametrize(
    "url",
    [
        "https://acme--gateway.modal.run",
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
    ],
)
def test_https_and_this_machine_are_accepted(url: str) -> None:
    RemoteTarget(url, ADMIN).close()


def test_cli_refuses_a_plain_http_url_without_sending_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", ADMIN)
    result = CliRunner().invoke(main, ["tenant", "list", "--url", "http://tenants.example.com"])
    assert result.exit_code == 1
    assert "https://" in result.stderr
    assert ADMIN not in result.output


def test_cli_delete_removes_the_tenants_files_and_a_new_tenant_starts_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("TENANTKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(tmp_path / "state"))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("tenant", "create", "--tenant-id", "acme-corp", "--name", "Acme", "--tier", "free")
    root = tmp_path / "state" / "volumes" / "acme-corp"
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "q1.json").write_text('{"revenue": 1}')
    listed = json.loads(run("storage", "ls", "--tenant-id", "acme-corp"))
    assert [f["path"] for f in listed["files"]] == ["reports/q1.json"]
    run("tenant", "delete", "--tenant-id", "acme-corp", "--yes")
    assert not root.exists()
    run("tenant", "create", "--tenant-id", "acme-corp", "--name", "New", "--tier", "free")
    assert json.loads(run("storage", "ls", "--tenant-id", "acme-corp"))["files"] == []
