"""Deploy security, offline: what is uploaded, and who holds tenantkit's secret.

The signing and admin keys live in one Modal Secret attached to the gateway
only; workers (which run tenant-facing code) never get it, and local secret
files never leave the machine with the app's folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from modal._serialization import serialize
from modal.file_pattern_matcher import _ignore_fn

from tenantkit.config import Settings, get_settings
from tenantkit.deploy import DeployOptions, build_modal_deployment, plan
from tenantkit.deploy.image import IGNORED_SOURCE_PATTERNS
from tenantkit.deploy.modal_app import _gateway_body, _worker_body
from tenantkit.deploy.runtime import GatewayConfig
from tenantkit.errors import DeployError
from tests.test_deploy_support import load_gpu_app

LOCAL_SECRETS = {
    ".env": "TENANTKIT_ADMIN_KEY=local-admin\n",
    ".env.production": "TENANTKIT_SIGNING_KEY=prod\n",
    ".envrc": "export TENANTKIT_SIGNING_KEY=direnv\n",
    ".netrc": "machine example.com password p\n",
    ".modal.toml": "[default]\ntoken_secret = 'as-xyz'\n",
    "sub/.env": "NESTED=1\n",
    ".tenantkit/signing-secret": "local-signing-secret\n",
    ".tenantkit/tenantkit.db": "SQLite format 3\n",
    ".tenantkit/volumes/acme-corp/report.json": "{}",
    ".git/config": "[remote]\n",
    ".venv/lib/site.py": "",
}


def uploaded_files(source_dir: Path, ignored: tuple[str, ...]) -> set[str]:
    """The files Modal's ``add_local_dir(..., ignore=ignored)`` would upload."""
    ignore = _ignore_fn(list(ignored))
    found = set()
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = [d for d in dirs if not ignore(Path(root, d).relative_to(source_dir))]
        for name in files:
            relative = Path(root, name).relative_to(source_dir)
            if not ignore(relative):
                found.add(relative.as_posix())
    return found


def secret_settings() -> Settings:
    return get_settings(
        signing_key="deploy-signing-" + secrets.token_urlsafe(32),
        admin_key="deploy-admin-" + secrets.token_urlsafe(32),
        database_url=None,
    )


def test_local_secrets_and_state_are_never_uploaded(tmp_path: Path) -> None:
    project = tmp_path / "project"
    app = load_gpu_app(project)
    for name, text in LOCAL_SECRETS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (project / "helpers.py").write_text("VALUE = 1\n")
    deploy_plan = plan(app, secret_settings())
    assert deploy_plan.image.source_dir == str(project)
    uploaded = uploaded_files(project, deploy_plan.image.ignored)
    assert "helpers.py" in uploaded
    assert any(name.endswith(".py") and "gpu" in name for name in uploaded)
    assert uploaded.isdisjoint(LOCAL_SECRETS), uploaded & set(LOCAL_SECRETS)


@pytest.mark.parametrize("pattern", [".env", ".tenantkit", ".envrc", ".modal.toml"])
def test_the_secret_patterns_are_in_the_ignore_list(pattern: str) -> None:
    assert f"**/{pattern}" in IGNORED_SOURCE_PATTERNS


def test_workers_never_get_the_tenantkit_secret_and_the_gateway_gets_only_it(
    tmp_path: Path,
) -> None:
    deployment = build_modal_deployment(load_gpu_app(tmp_path / "project"), secret_settings())
    secret_name = DeployOptions().secret_name
    for spec in deployment.plan.functions:
        assert secret_name not in spec.secrets, spec.name
    assert deployment.plan.gateway.secrets == (secret_name,)
    tenantkit_secret = f"modal.Secret.from_name('{secret_name}')"
    for name, function in deployment.workers.items():
        assert tenantkit_secret not in function.info().secrets, name
    assert deployment.gateway.info().secrets == [tenantkit_secret]


def test_a_function_asking_for_the_tenantkit_secret_stops_the_deploy(tmp_path: Path) -> None:
    app = load_gpu_app(tmp_path / "project")
    options = DeployOptions(secret_name="hf-token")  # a function of the app attaches it
    deploy_plan = plan(app, secret_settings(), options)
    assert not deploy_plan.ok
    with pytest.raises(DeployError, match="could mint API keys"):
        deploy_plan.raise_for_errors()
    with pytest.raises(DeployError):
        build_modal_deployment(app, secret_settings(), options)


def test_no_key_material_is_serialized_into_any_function(tmp_path: Path) -> None:
    """Settings read locally (signing and admin keys included) are never
    pickled into what Modal uploads; containers read them from the Secret."""
    settings = secret_settings()
    deployment = build_modal_deployment(load_gpu_app(tmp_path / "project"), settings)
    assert settings.signing_key is not None
    assert settings.admin_key is not None
    material = [
        settings.signing_key.get_secret_value().encode(),
        settings.admin_key.get_secret_value().encode(),
    ]
    bodies = [
        _worker_body(deployment.source, spec.name, spec.gpu_type, spec.gpu_count)
        for spec in deployment.plan.functions
    ]
    bodies.append(_gateway_body(deployment.source, deployment.gateway_config))
    for body in bodies:
        data = serialize(body)
        for secret in material:
            assert secret not in data
    assert not {"signing_key", "admin_key"} & set(GatewayConfig.__dataclass_fields__)


def test_the_deployed_gateway_removes_a_deleted_tenants_volume_files(tmp_path: Path) -> None:
    """The deployed gateway's tenant service knows the app name, so deleting a
    tenant over the admin API empties its Volume; only the local backend also
    sweeps before an id is reused (no Modal calls on every creation)."""
    from tenantkit.deploy.runtime import _name_tenant_volumes
    from tenantkit.gateway import create_gateway
    from tenantkit.storage import FilesRemover
    from tests.test_deploy_support import load_gpu_app as load

    settings = get_settings(
        data_dir=tmp_path / "data",
        signing_key=secrets.token_urlsafe(32),
        storage_backend="modal",
    )
    api = create_gateway(load(tmp_path / "project"), settings)
    services = api.state.tenantkit
    assert services.tenants.remove_files is None  # no app name: nothing it could find
    _name_tenant_volumes(api, "gpu-demo", settings)
    remover = services.tenants.remove_files
    assert isinstance(remover, FilesRemover)
    assert remover.app_name == "gpu-demo"
    assert remover("acme-corp", leftovers=True) == (0, 0)  # no network on creation
    services.db.close()


def test_a_data_dir_or_sqlite_file_inside_the_folder_is_never_uploaded(tmp_path: Path) -> None:
    """Local state kept in the app's folder under another name than .tenantkit
    (TENANTKIT_DATA_DIR=state, a sqlite:/// URL next to app.py) stays local too."""
    project = tmp_path / "project"
    app = load_gpu_app(project)
    state = {
        "state/signing-secret": "local-signing-secret\n",
        "state/volumes/acme-corp/report.json": "{}",
        "records.db": "SQLite format 3\n",
        "records.db-wal": "wal\n",
        "records.db-shm": "shm\n",
    }
    for name, text in state.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (project / "statements.py").write_text("X = 1\n")
    settings = get_settings(
        data_dir=project / "state", database_url=f"sqlite:///{project}/records.db"
    )
    deploy_plan = plan(app, settings)
    uploaded = uploaded_files(project, deploy_plan.image.ignored)
    assert uploaded.isdisjoint(state), uploaded & set(state)
    assert "statements.py" in uploaded  # a pattern for "state" does not catch "statements.py"
    outside = get_settings(data_dir=tmp_path / "elsewhere")
    assert plan(app, outside).image.ignored == IGNORED_SOURCE_PATTERNS
