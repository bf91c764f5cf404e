"""The deploy plan: offline, every function and setting listed, problems are errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantkit.config import Settings
from tenantkit.deploy import DeployOptions, DeployPlan, plan
from tenantkit.deploy.plan import DB_MOUNT, GATEWAY_FUNCTION, MAX_TIMEOUT
from tenantkit.errors import DeployError
from tenantkit.workers import GPU_TYPES, TenantApp, load_app
from tests.test_deploy_support import QUICKSTART, load_gpu_app, load_quickstart, write_app

PG = "postgresql://postgres@127.0.0.1:5432/test"


def local_settings(**values: object) -> Settings:
    return Settings(**{"database_url": None, **values})  # type: ignore[arg-type]


def test_quickstart_plan_lists_every_function_with_its_routes() -> None:
    p = plan(load_quickstart(), local_settings())
    assert p.ok, p.errors
    assert p.app_name == "multi-tenant-saas"
    names = [f.name for f in p.functions]
    assert names == sorted(["analyze", "transform", "aggregate", "score_text", "inference"])
    by_name = {f.name: f for f in p.functions}
    assert by_name["inference"].routes[0] == "POST /inference"
    assert "POST /functions/analyze" in by_name["analyze"].routes
    assert by_name["score_text"].timeout == 10
    assert all(f.gpu_type is None and f.gpu_count == 0 for f in p.functions)
    assert p.image.app_ref == "/root/project/app.py::app"
    assert p.image.source_dir == str(QUICKSTART.parent)
    assert "**/.env" in p.image.ignored


def test_starter_mode_is_the_default_and_says_what_it_means() -> None:
    p = plan(load_quickstart(), local_settings())
    assert p.database.mode == "starter"
    assert p.database.strategy == "recreate"
    assert p.database.volume == "multi-tenant-saas-db"
    assert p.gateway.max_containers == 1
    assert p.gateway.volumes == {DB_MOUNT: "multi-tenant-saas-db"}
    assert "5s" in p.database.durability
    assert "One gateway container" in p.database.durability
    assert next(v.name for v in p.volumes) == "multi-tenant-saas-db"
    assert p.volumes[1].name == "multi-tenant-saas.<tenant-id>"


def test_production_mode_follows_a_postgres_url_and_scales_out() -> None:
    p = plan(
        load_quickstart(),
        local_settings(database_url=PG),
        DeployOptions(gateway_max_containers=8, gateway_min_containers=2),
    )
    assert p.ok, p.errors
    assert p.database.mode == "production"
    assert p.database.strategy == "rolling"
    assert p.database.volume is None
    assert p.gateway.volumes == {}
    assert (p.gateway.min_containers, p.gateway.max_containers) == (2, 8)
    assert "Modal Secret 'tenantkit'" in p.database.url
    assert any("TENANTKIT_DATABASE_URL" in w for w in p.warnings)
    assert any(package.startswith("psycopg") for package in p.image.packages)


def test_gpu_function_options_reach_the_plan(tmp_path: Path) -> None:
    p = plan(load_gpu_app(tmp_path), local_settings())
    assert p.ok, p.errors
    embed = next(f for f in p.functions if f.name == "embed")
    assert (embed.gpu_type, embed.gpu_count) == ("A100-80GB", 2)
    assert embed.timeout == 601  # Modal takes whole seconds: rounded up, never down
    assert (embed.memory, embed.cpu, embed.retries) == (32768, 4.0, 2)
    assert embed.secrets == ("shared-config", "hf-token")
    assert embed.tiers == ("enterprise", "pro")
    assert p.secrets == ("hf-token", "shared-config", "tenantkit")
    assert p.gateway.secrets == ("tenantkit",)  # workers never hold the signing key
    assert p.gateway.timeout == 601 * 3 + 60  # the longest call (3 attempts) + a minute
    assert p.image.requirements == ("numpy==2.1.0",)


def test_plan_is_json_ready() -> None:
    p = plan(load_quickstart(), local_settings())
    data = json.loads(json.dumps(p.to_dict()))
    assert data["ok"] is True
    assert data["database"]["mode"] == "starter"
    assert {f["name"] for f in data["functions"]} >= {"analyze", "inference"}
    assert data["gateway"]["max_containers"] == 1


def _with_function_options(app: TenantApp, name: str, **changes: object) -> None:
    function = app.functions[name]
    function.options = dataclasses.replace(function.options, **changes)  # type: ignore[arg-type]


def errors_of(p: DeployPlan) -> str:
    return "\n".join(p.errors)


def test_unknown_gpu_type_is_an_error(tmp_path: Path) -> None:
    app = load_gpu_app(tmp_path)
    _with_function_options(app, "embed", gpu="V100")
    p = plan(app, local_settings())
    assert not p.ok
    assert "unknown gpu type 'V100'" in errors_of(p)
    with pytest.raises(DeployError, match="unknown gpu type"):
        p.raise_for_errors()


def test_missing_and_invalid_secret_names_are_errors(tmp_path: Path) -> None:
    app = load_gpu_app(tmp_path)
    _with_function_options(app, "embed", secrets=("", "bad name"))
    p = plan(app, local_settings(), DeployOptions(secret_name=""))
    text = errors_of(p)
    assert "missing secret name" in text
    assert "invalid secret (function 'embed') name 'bad name'" in text
    assert "missing secret (function 'embed') name" in text


@pytest.mark.parametrize("max_containers", [2, 5, 100])
def test_sqlite_with_more_than_one_gateway_container_is_an_error(max_containers: int) -> None:
    p = plan(
        load_quickstart(),
        local_settings(),
        DeployOptions(database="starter", gateway_max_containers=max_containers),
    )
    assert f"max containers is {max_containers}" in errors_of(p)
    assert "database mode mismatch" in errors_of(p)


def test_database_mode_mismatches_are_errors() -> None:
    app = load_quickstart()
    starter_on_pg = plan(app, local_settings(database_url=PG), DeployOptions(database="starter"))
    assert "TENANTKIT_DATABASE_URL is PostgreSQL but the mode is starter" in errors_of(
        starter_on_pg
    )
    prod_on_sqlite = plan(
        app,
        local_settings(database_url="sqlite:///records.db"),
        DeployOptions(database="production"),
    )
    assert "production mode needs PostgreSQL" in errors_of(prod_on_sqlite)
    # An explicit production deploy without a local URL is fine: the URL is in the Secret.
    assert plan(app, local_settings(), DeployOptions(database="production")).ok


def test_other_problems_found_before_any_upload(tmp_path: Path) -> None:
    app = load_gpu_app(tmp_path)
    _with_function_options(app, "norm", timeout=MAX_TIMEOUT + 1.0)
    p = plan(
        app,
        local_settings(),
        DeployOptions(gateway_scaledown_window=1, gateway_concurrency=0, commit_interval=0),
    )
    text = errors_of(p)
    assert "over Modal's limit" in text
    assert "scaledown window must be 2 to 3600" in text
    assert "gateway concurrency must be at least 1" in text
    assert "commit interval must be a positive number" in text
    assert p.problems[0].level == "error"  # errors come first


def test_a_function_named_like_the_gateway_is_refused() -> None:
    app = TenantApp("clash")

    @app.tenant_function(name=GATEWAY_FUNCTION)
    def gateway_function(x: int) -> int:
        return x

    p = plan(app, local_settings(), location=None)
    assert "taken by tenantkit's gateway" in errors_of(p)


def test_an_app_outside_a_file_cannot_be_located() -> None:
    def build() -> TenantApp:
        return TenantApp("inline-app")

    p = plan(build(), local_settings())
    assert "module-level variable" in errors_of(p)


def test_invalid_app_name_is_an_error() -> None:
    p = plan(TenantApp("my app"), local_settings(), location=None)
    assert "invalid app name 'my app'" in errors_of(p)


@settings(max_examples=60, deadline=None)
@given(
    gpu_type=st.sampled_from(sorted(GPU_TYPES)),
    count=st.integers(1, 8),
    lower=st.booleans(),
)
def test_every_modal_gpu_string_plans_cleanly(gpu_type: str, count: int, lower: bool) -> None:
    app = TenantApp("gpu-prop")
    spelled = f"{gpu_type}:{count}"

    @app.tenant_function(gpu=spelled.lower() if lower else spelled)
    def f(x: int) -> int:
        return x

    p = plan(app, local_settings(), location=None)
    assert p.ok, p.errors
    (fp,) = p.functions
    assert fp.gpu_count == count
    assert fp.gpu_type is not None
    assert fp.gpu_type.upper() == gpu_type


@settings(max_examples=60, deadline=None)
@given(
    database=st.sampled_from([None, "starter", "production"]),
    max_containers=st.one_of(st.none(), st.integers(-2, 50)),
    url=st.sampled_from([None, PG, "sqlite:///x.db"]),
)
def test_starter_mode_never_plans_more_than_one_gateway(
    database: str | None, max_containers: int | None, url: str | None
) -> None:
    p = plan(
        TenantApp("prop-app"),
        local_settings(database_url=url),
        DeployOptions(database=database, gateway_max_containers=max_containers),  # type: ignore[arg-type]
        location=None,
    )
    if p.database.mode == "starter":
        assert p.gateway.max_containers == 1
        if max_containers not in (None, 1):
            assert not p.ok
    if p.ok and p.database.mode == "production":
        assert p.database.volume is None
        assert p.gateway.volumes == {}


def test_third_party_imports_missing_from_requirements_are_flagged(tmp_path: Path) -> None:
    source = QUICKSTART.read_text().replace('requirements=["scikit-learn>=1.5"]', "requirements=[]")
    assert source != QUICKSTART.read_text()
    app = load_app(str(write_app(tmp_path / "project", source, "undeclared_app.py")))
    p = plan(app, local_settings())
    assert p.ok  # a warning: the import may be optional
    (warning,) = [w for w in p.warnings if "requirements do not list" in w]
    assert "'sklearn' (scikit-learn)" in warning


def test_the_quickstart_declares_what_it_imports() -> None:
    p = plan(load_quickstart(), local_settings())
    assert "scikit-learn>=1.5" in load_quickstart().requirements
    assert not [w for w in p.warnings if "requirements do not list" in w]


def test_declared_requirements_stdlib_and_local_modules_are_not_flagged(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_app(project, "VALUE = 1\n", "helpers.py")
    source = """
        import json
        import numpy
        import helpers
        from pydantic import BaseModel
        from tenantkit.workers import TenantApp

        app = TenantApp("flagged", requirements=["numpy>=1.26"])

        @app.tenant_function
        def f(x: int) -> int:
            import sklearn.linear_model
            return x + helpers.VALUE
        """
    app = load_app(str(write_app(project, source, "flagged_app.py")))
    flagged = [w for w in plan(app, local_settings()).warnings if "requirements do not list" in w]
    assert len(flagged) == 1
    assert "'sklearn'" in flagged[0]


def test_workers_holding_the_tenantkit_secret_is_refused(tmp_path: Path) -> None:
    p = plan(load_gpu_app(tmp_path), local_settings(), DeployOptions(secret_name="hf-token"))
    (error,) = [e for e in p.errors if "could mint API keys" in e]
    assert "'embed'" in error
    assert "'norm'" not in error
    assert not p.ok
