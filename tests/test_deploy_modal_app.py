"""The built ``modal.App``, checked offline with ``Function.info()`` and ``.local()``.

``modal.Function.info()`` answers without a network call for functions
defined locally (modal 1.6 fills it in at definition). It does not show
autoscaling (``min_containers``, ``max_containers``, ``scaledown_window``);
those are checked on tenantkit's own record, ``ModalDeployment.gateway_options``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import modal
import pytest

from tenantkit.config import Settings
from tenantkit.deploy import (
    AppSource,
    DeployOptions,
    ModalDeployment,
    build_modal_app,
    build_modal_deployment,
)
from tenantkit.deploy.modal_app import _worker_body
from tenantkit.errors import DeployError
from tenantkit.workers import Envelope, TenantContext
from tests.test_deploy_support import load_gpu_app, load_quickstart

PG = "postgresql://postgres@127.0.0.1:5432/test"


def settings(url: str | None = None) -> Settings:
    return Settings(database_url=url)


def ctx(tenant: str = "acme-corp") -> TenantContext:
    return TenantContext(tenant_id=tenant, tier="pro", request_id="req-1", key_id="k1")


@pytest.fixture(scope="module")
def quickstart() -> ModalDeployment:
    return build_modal_deployment(load_quickstart(), settings())


def test_one_app_named_after_the_tenant_app(quickstart: ModalDeployment) -> None:
    assert isinstance(quickstart.app, modal.App)
    assert quickstart.app.name == "multi-tenant-saas"
    assert sorted(quickstart.workers) == sorted(
        ["analyze", "transform", "aggregate", "score_text", "inference"]
    )
    # Every function belongs to that one app (the seed's split apps never deployed workers).
    assert all(fn.app is quickstart.app for fn in quickstart.workers.values())
    assert quickstart.gateway.app is quickstart.app
    assert isinstance(build_modal_app(load_quickstart(), settings()), modal.App)


def test_workers_carry_their_options(quickstart: ModalDeployment) -> None:
    for name, fn in quickstart.workers.items():
        info = fn.info()
        assert info.timeout == (10 if name == "score_text" else 60)
        assert info.gpus == []
        assert info.secrets == []  # no tenantkit Secret in workers
        assert info.volumes == {}
        assert info.web_info is None
        assert info.max_retries is None


def test_gateway_is_a_concurrent_web_endpoint_with_the_secret_and_db_volume(
    quickstart: ModalDeployment,
) -> None:
    info = quickstart.gateway.info()
    assert info.web_info is not None
    assert info.concurrency_info is not None
    assert info.concurrency_info.max_inputs == 100
    assert info.secrets == ["modal.Secret.from_name('tenantkit')"]
    assert list(info.volumes) == ["/tenantkit-db"]
    assert info.volumes["/tenantkit-db"].name == "multi-tenant-saas-db"
    assert info.volumes["/tenantkit-db"].read_only is False
    assert info.timeout == 300
    options = quickstart.gateway_options
    assert options["max_containers"] == 1
    assert options["min_containers"] == 0
    assert options["scaledown_window"] == 300
    assert "keep_warm" not in options
    assert "container_idle_timeout" not in options


def test_gpu_memory_cpu_retries_and_secrets_reach_modal(tmp_path: Path) -> None:
    deployment = build_modal_deployment(
        load_gpu_app(tmp_path),
        settings(PG),
        DeployOptions(gateway_max_containers=4, gateway_min_containers=1, gateway_concurrency=50),
    )
    embed = deployment.workers["embed"].info()
    assert embed.gpus == [("A100-80GB", 2)]
    assert embed.timeout == 601
    assert embed.memory_mib == 32768
    assert embed.cpu == 4.0
    assert embed.max_retries == 2
    assert embed.secrets == [
        "modal.Secret.from_name('shared-config')",
        "modal.Secret.from_name('hf-token')",
    ]
    norm = deployment.workers["norm"].info()
    assert norm.gpus == []
    assert norm.memory_mib is None
    assert norm.cpu is None
    assert norm.secrets == ["modal.Secret.from_name('shared-config')"]
    gateway = deployment.gateway.info()
    assert gateway.volumes == {}  # production: PostgreSQL, no database Volume
    assert gateway.concurrency_info is not None
    assert gateway.concurrency_info.max_inputs == 50
    assert deployment.gateway_options["max_containers"] == 4
    assert deployment.gateway_options["min_containers"] == 1
    assert deployment.gateway_config.mode == "production"


def test_plan_errors_stop_the_build(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="max containers is 3"):
        build_modal_deployment(
            load_gpu_app(tmp_path),
            settings(),
            DeployOptions(database="starter", gateway_max_containers=3),
        )


def test_worker_local_call_returns_the_measured_envelope(quickstart: ModalDeployment) -> None:
    envelope = quickstart.workers["transform"].local(
        {"items": [3, 1, 2], "operation": "sort"}, ctx()
    )
    assert isinstance(envelope, Envelope)
    assert envelope.ok
    assert envelope.value == {"operation": "sort", "items": [1.0, 2.0, 3.0]}
    assert envelope.compute_seconds > 0
    assert (envelope.gpu_type, envelope.gpu_count) == (None, 0)


def test_worker_validates_again_and_returns_json_ready_values(tmp_path: Path) -> None:
    deployment = build_modal_deployment(load_gpu_app(tmp_path), settings())
    norm = deployment.workers["norm"]
    envelope = norm.local({"point": {"x": -1.5, "y": 2}}, ctx())
    assert envelope.ok
    assert envelope.value == {"x": 1.5, "y": 2.0}  # a pydantic model, sent back as JSON data
    bad = norm.local({"point": {"x": "not a number"}}, ctx())
    assert bad.error == "InvalidArguments"
    assert bad.problem is not None
    assert bad.problem["status"] == 422
    embed = deployment.workers["embed"].local({"texts": ["a", "b"]}, ctx("globex"))
    assert embed.value == {"n": 2, "tenant": "globex"}
    assert (embed.gpu_type, embed.gpu_count) == ("A100-80GB", 2)
    assert embed.gpu_seconds == pytest.approx(embed.compute_seconds * 2)


def test_worker_reports_errors_by_type_only(tmp_path: Path) -> None:
    deployment = build_modal_deployment(load_gpu_app(tmp_path), settings())
    failed = deployment.workers["explode"].local({"n": 1}, ctx())
    assert failed.error == "RuntimeError"
    assert failed.value is None
    assert "secret internal detail" not in repr(failed)
    rejected = deployment.workers["reject"].local({"n": 1}, ctx())
    assert rejected.problem is not None
    assert rejected.problem["status"] == 422


def test_app_source_pickles_to_its_reference_only(tmp_path: Path) -> None:
    app = load_gpu_app(tmp_path)
    source = AppSource("/root/project/gpu_app.py::app", app)
    assert source.load() is app
    copy = pickle.loads(pickle.dumps(source))
    assert copy.ref == source.ref
    assert copy._app is None


def test_worker_body_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """What a container does: unpickle the serialized body, load the app from
    its file, run the call, send back an envelope."""
    app_file = tmp_path / "project" / "gpu_app.py"
    load_gpu_app(app_file.parent)
    body = _worker_body(AppSource(f"{app_file}::app"), "norm", None, 0)
    from modal._serialization import serialize

    payload = tmp_path / "body.pkl"
    payload.write_bytes(serialize(body))
    script = textwrap.dedent(
        f"""
        import pickle, sys
        from modal._serialization import deserialize
        from tenantkit.workers import TenantContext
        body = deserialize(open({str(payload)!r}, "rb").read(), None)
        envelope = body({{"point": {{"x": -2, "y": -3}}}}, TenantContext("acme-corp", "pro", "r"))
        assert "gpu_app" in sys.modules, sorted(sys.modules)
        print(envelope.value, envelope.error, envelope.compute_seconds > 0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'x': 2.0, 'y': 3.0} None True"


def test_importing_tenantkit_and_its_deploy_package_never_imports_modal() -> None:
    code = (
        "import sys, tenantkit, tenantkit.deploy, tenantkit.cli\n"
        "from tenantkit.deploy import plan, DeployOptions\n"
        "print(sorted(m for m in sys.modules if m == 'modal' or m.startswith('modal.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_serialized_bodies_carry_references_not_the_app(quickstart: ModalDeployment) -> None:
    """What Modal uploads for each function: a small closure whose app handle
    is a file reference (the live app, with its trained models, stays here)."""
    from modal._serialization import deserialize, serialize

    from tenantkit.deploy.modal_app import _gateway_body

    bodies = {
        "worker": _worker_body(quickstart.source, "analyze", None, 0),
        "gateway": _gateway_body(quickstart.source, quickstart.gateway_config),
    }
    for kind, body in bodies.items():
        data = serialize(body)
        assert len(data) < 20_000, (kind, len(data))
        copy = deserialize(data, None)
        cells = [cell.cell_contents for cell in copy.__closure__ or ()]
        (source,) = [c for c in cells if isinstance(c, AppSource)]
        assert source.ref == "/root/project/app.py::app"
        assert source._app is None
    assert quickstart.gateway_config.mode == "starter"
