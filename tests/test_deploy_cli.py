"""``tenantkit deploy`` and ``tenantkit secret create`` on the command line.

Without Modal credentials both fail at once, in a real subprocess with a
clean HOME: exit code 1, one line naming ``modal token new``, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantkit.cli import main
from tenantkit.deploy import NO_CREDENTIALS, has_modal_credentials
from tenantkit.deploy.commands import secret_values
from tenantkit.errors import DeployError
from tests.test_deploy_support import GPU_APP, QUICKSTART, write_app

CLI = [sys.executable, "-c", "from tenantkit.cli import main; main()"]


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODAL_", "TENANTKIT_")) and k not in ("JWT_SECRET_KEY",)
    }
    env["HOME"] = str(home)
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=clean_env(home),
        cwd=home,
        check=False,
    )


def assert_no_credentials(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip() == f"Error: {NO_CREDENTIALS}"
    assert "modal token new" in done.stderr


@pytest.mark.slow
def test_deploy_without_credentials_fails_at_once(tmp_path: Path) -> None:
    assert_no_credentials(run_cli("deploy", str(QUICKSTART), home=tmp_path))


@pytest.mark.slow
def test_secret_create_without_credentials_fails_at_once(tmp_path: Path) -> None:
    assert_no_credentials(run_cli("secret", "create", "--name", "tenantkit", home=tmp_path))


@pytest.mark.slow
def test_dry_run_needs_no_credentials(tmp_path: Path) -> None:
    done = run_cli("deploy", str(QUICKSTART), "--dry-run", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True
    assert data["app_name"] == "multi-tenant-saas"


def test_credentials_are_read_from_modal_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    assert has_modal_credentials()
    monkeypatch.delenv("MODAL_TOKEN_SECRET")
    monkeypatch.setenv("MODAL_CONFIG_PATH", "/nonexistent/.modal.toml")
    from modal.config import config

    if config.get("token_secret"):
        pytest.skip("this machine has a Modal profile with a token")
    assert not has_modal_credentials()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no cell cut short


def dry_run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["deploy", *args, "--dry-run"])
    return result.exit_code, result.stdout, result.stderr


def test_dry_run_table_shows_functions_gateway_database_volumes_secrets(tmp_path: Path) -> None:
    app_file = write_app(tmp_path / "project", GPU_APP, "gpu_app.py")
    code, out, _ = dry_run(str(app_file))
    assert code == 0, out
    for expected in (
        "Deploy plan for Modal App 'gpu-demo'",
        "Functions",
        "A100-80GB x2",
        "32768",
        "/inference",
        "/functions/norm",
        "hf-token",
        "Gateway",
        "max_containers",
        "scaledown_window",
        "Database: starter mode",
        "recreate",
        "gpu-demo-db",
        "gpu-demo.<tenant-id>",
        "numpy==2.1.0",
        "/root/project",
    ):
        assert expected in out, expected
    assert "Error" not in out


def test_dry_run_json_is_the_plan(tmp_path: Path) -> None:
    app_file = write_app(tmp_path / "project", GPU_APP, "gpu_app.py")
    code, out, _ = dry_run(f"{app_file}::app", "--json", "--database", "production")
    assert code == 0
    data = json.loads(out)
    assert data["database"]["mode"] == "production"
    embed = next(f for f in data["functions"] if f["name"] == "embed")
    assert (embed["gpu_type"], embed["gpu_count"], embed["timeout"]) == ("A100-80GB", 2, 601)
    assert data["gateway"]["secrets"] == ["tenantkit"]


def test_dry_run_errors_exit_one_before_anything_is_built(tmp_path: Path) -> None:
    app_file = write_app(tmp_path / "project", GPU_APP, "gpu_app.py")
    code, out, _ = dry_run(str(app_file), "--database", "starter", "--max-containers", "3")
    assert code == 1
    assert "Error:" in out
    assert "max containers is 3" in out
    code, out, _ = dry_run(str(app_file), "--json", "--secret", "")
    assert code == 1
    assert "missing secret name" in json.loads(out)["errors"]


def test_deploy_refuses_a_bad_plan_with_one_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    app_file = write_app(tmp_path / "project", GPU_APP, "gpu_app.py")
    result = CliRunner().invoke(
        main, ["deploy", str(app_file), "--scaledown-window", "1", "--concurrency", "0"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the deploy plan has 2 problems:")
    assert "scaledown window" in result.stderr
    assert "concurrency" in result.stderr


def test_secret_values_are_fresh_and_fit_the_signing_rules() -> None:
    from tenantkit.auth.signing import MIN_SECRET_BYTES

    first, second = secret_values(), secret_values()
    assert first["TENANTKIT_SIGNING_KEY"] != second["TENANTKIT_SIGNING_KEY"]
    assert first["TENANTKIT_ADMIN_KEY"] != second["TENANTKIT_ADMIN_KEY"]
    assert len(first["TENANTKIT_SIGNING_KEY"]) >= MIN_SECRET_BYTES
    eddsa = secret_values(algorithm="EdDSA", database_url="postgresql://u@db/x")
    assert eddsa["TENANTKIT_SIGNING_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
    assert eddsa["TENANTKIT_DATABASE_URL"] == "postgresql://u@db/x"
    with pytest.raises(DeployError, match="postgresql://"):
        secret_values(database_url="sqlite:///x.db")


def test_an_app_file_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    app_file = write_app(
        tmp_path / "project", "import not_installed_anywhere_xyz\n", "broken_app.py"
    )
    code, _, err = dry_run(str(app_file))
    assert code == 1
    assert err.strip() == (
        f"Error: cannot load {app_file}: ModuleNotFoundError: No module named "
        "'not_installed_anywhere_xyz' (run with --debug for the traceback)"
    )
