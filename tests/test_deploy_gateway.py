"""The deployed gateway, in-process: requests go through the gateway's ASGI app
to the worker Modal Functions' ``.local()``, and usage is recorded from the
envelopes the workers return. Starter mode's SQLite snapshots survive a
restart of the gateway container.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import modal
import pytest
from fastapi import FastAPI

from tenantkit.config import Settings
from tenantkit.db import Tenant, open_database
from tenantkit.deploy import (
    AppSource,
    DeployOptions,
    GatewayConfig,
    ModalDeployment,
    ModalExecutor,
    SQLiteSnapshots,
    build_modal_deployment,
)
from tenantkit.deploy.modal_app import _gateway_body
from tenantkit.deploy.runtime import SNAPSHOT_NAME, gateway_app
from tenantkit.errors import DeployError
from tenantkit.workers import Envelope, Executor, TenantContext, TenantFunction
from tests.test_deploy_support import load_gpu_app

PG = os.environ.get("TENANTKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def container_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What the Modal Secret gives the gateway container, and an empty working folder."""
    work = tmp_path / "container"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("TENANTKIT_") or name in ("JWT_SECRET_KEY", "JWT_ALGORITHM"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TENANTKIT_SIGNING_KEY", secrets.token_urlsafe(48))
    monkeypatch.setenv("TENANTKIT_ADMIN_KEY", "tka_" + secrets.token_urlsafe(32))
    monkeypatch.setenv("TENANTKIT_DATA_DIR", str(work / ".tenantkit"))
    monkeypatch.setenv("TENANTKIT_USAGE_FLUSH_INTERVAL", "0.05")
    return work


class RecordingExecutor(ModalExecutor):
    """A ModalExecutor that also keeps the envelopes it returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.envelopes: list[Envelope] = []

    async def run(
        self, function: TenantFunction, arguments: dict[str, Any], ctx: TenantContext
    ) -> Envelope:
        envelope = await super().run(function, arguments, ctx)
        self.envelopes.append(envelope)
        return envelope


@pytest.fixture
def deployment(tmp_path: Path) -> ModalDeployment:
    return build_modal_deployment(load_gpu_app(tmp_path / "project"), Settings(database_url=None))


def starter_config(deployment: ModalDeployment, folder: Path) -> GatewayConfig:
    return GatewayConfig(
        app_name=deployment.plan.app_name,
        environment=None,
        mode="starter",
        secret_name="tenantkit",
        db_volume="gpu-demo-db",
        commit_interval=0.05,
        db_mount=str(folder / "volume"),
        live_db_path=str(folder / "live" / "tenantkit.db"),
    )


@asynccontextmanager
async def serving(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def test_a_full_request_records_usage_from_the_worker_envelope(
    deployment: ModalDeployment, container_env: Path
) -> None:
    config = starter_config(deployment, container_env)
    executor = RecordingExecutor(deployment.plan.app_name, functions=deployment.workers, local=True)
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    api = gateway_app(deployment.source, config, executor=executor, commit=commit)
    services = api.state.tenantkit
    _, issued = services.tenants.create("acme-corp", "Acme", "pro")
    headers = {"Authorization": f"Bearer {issued.api_key}"}

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with serving(api) as client:
            embed = await client.post(
                "/inference", json={"texts": ["a", "b", "c"]}, headers=headers
            )
            norm = await client.post(
                "/functions/norm", json={"point": {"x": -1, "y": 4}}, headers=headers
            )
            return embed, norm

    embed, norm = asyncio.run(scenario())
    assert embed.status_code == 200, embed.text
    assert embed.json()["n"] == 3
    assert embed.json()["tenant"] == "acme-corp"
    assert norm.status_code == 200, norm.text
    assert norm.json() == {"x": 1.0, "y": 4.0}

    # The final snapshot ran after the meter's last flush: the Volume copy holds the usage.
    stored = Path(config.db_mount) / SNAPSHOT_NAME
    assert stored.exists()
    assert commits
    db = open_database(f"sqlite:///{stored}")
    try:
        with db.transaction(write=False) as tx:
            events = tx.usage_events("acme-corp", 0, 1e12)
    finally:
        db.close()
    assert sorted(e.function for e in events) == ["embed", "norm"]
    by_function = {e.function: e for e in events}
    envelopes = {"embed": executor.envelopes[0], "norm": executor.envelopes[1]}
    for name, event in by_function.items():
        envelope = envelopes[name]
        assert event.compute_seconds == pytest.approx(envelope.compute_seconds)
        assert event.gpu_type == envelope.gpu_type
        assert event.gpu_count == envelope.gpu_count
        assert event.status == 200
    assert by_function["embed"].gpu_type == "A100-80GB"
    assert by_function["embed"].gpu_seconds == pytest.approx(2 * envelopes["embed"].compute_seconds)
    assert by_function["norm"].gpu_type is None


def test_files_a_worker_writes_are_counted_in_the_gateways_storage_counters(
    tmp_path: Path, container_env: Path
) -> None:
    """A worker's ``ctx.storage`` arrives unpickled, counting in a ledger of its
    own; the envelope carries the net change and the gateway applies it."""
    from tenantkit.storage import storage_for
    from tests.test_deploy_support import load_quickstart

    deployment = build_modal_deployment(load_quickstart(), Settings(database_url=None))
    executor = RecordingExecutor(deployment.plan.app_name, functions=deployment.workers, local=True)

    async def commit() -> None:
        return None

    api = gateway_app(
        deployment.source,
        starter_config(deployment, container_env),
        executor=executor,
        commit=commit,
    )
    services = api.state.tenantkit
    # Tenant files in a local folder instead of Modal Volumes (no network here).
    files = services.settings.model_copy(
        update={"storage_backend": "local", "data_dir": tmp_path / "files"}
    )
    services.storage_factory = lambda tenant_id, tier: storage_for(
        tenant_id, tier, files, services.db
    )
    _, issued = services.tenants.create("acme-corp", "Acme", "pro")
    headers = {"Authorization": f"Bearer {issued.api_key}"}

    async def scenario() -> list[httpx.Response]:
        async with serving(api) as client:
            return [
                await client.post(
                    "/process",
                    json={"task_type": "analyze", "data": {"items": items}},
                    headers=headers,
                )
                for items in ([1, 2, 3], [4.5, 6])
            ]

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    changes = [e.storage_change for e in executor.envelopes]
    assert all(c is not None and c[0] > 0 and c[1] == 1 for c in changes), changes
    storage = services.storage_for("acme-corp", services.tier_named("pro"))
    counted = storage.usage()
    assert counted == (sum(c[0] for c in changes if c), 2)
    assert storage.recount() == counted  # the counters match what is on disk
    stored = sorted(f.path for f in storage.list())
    assert stored == sorted(f"results/{r.json()['request_id']}.json" for r in responses)


def test_starter_records_survive_a_gateway_restart(
    deployment: ModalDeployment, container_env: Path
) -> None:
    config = starter_config(deployment, container_env)

    async def commit() -> None:
        return None

    def start() -> FastAPI:
        executor = ModalExecutor(deployment.plan.app_name, functions=deployment.workers, local=True)
        return gateway_app(deployment.source, config, executor=executor, commit=commit)

    first = start()
    _, issued = first.state.tenantkit.tenants.create("globex", "Globex", "free")

    async def call(api: FastAPI) -> int:
        async with serving(api) as client:
            response = await client.post(
                "/functions/norm",
                json={"point": {"x": 1, "y": 1}},
                headers={"Authorization": f"Bearer {issued.api_key}"},
            )
            return response.status_code

    assert asyncio.run(call(first)) == 200
    # The container is gone, its disk with it; a new one restores from the Volume.
    live = Path(config.live_db_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    second = start()
    with second.state.tenantkit.db.transaction(write=False) as tx:
        assert len(tx.usage_events("globex", 0, 1e12)) == 1  # the first call's record
    assert asyncio.run(call(second)) == 200  # the same API key still works
    restored = open_database(f"sqlite:///{Path(config.db_mount) / SNAPSHOT_NAME}")
    try:
        with restored.transaction(write=False) as tx:
            assert len(tx.usage_events("globex", 0, 1e12)) == 2
    finally:
        restored.close()


def test_a_tier_refused_call_never_reaches_a_worker(
    deployment: ModalDeployment, container_env: Path
) -> None:
    executor = RecordingExecutor(deployment.plan.app_name, functions=deployment.workers, local=True)

    async def commit() -> None:
        return None

    api = gateway_app(
        deployment.source,
        starter_config(deployment, container_env),
        executor=executor,
        commit=commit,
    )
    _, issued = api.state.tenantkit.tenants.create("initech", "Initech", "free")

    async def scenario() -> int:
        async with serving(api) as client:
            response = await client.post(
                "/inference",
                json={"texts": ["a"]},
                headers={"Authorization": f"Bearer {issued.api_key}"},
            )
            return response.status_code

    assert asyncio.run(scenario()) == 403
    assert executor.envelopes == []


def test_modal_timeouts_and_failures_become_envelopes(deployment: ModalDeployment) -> None:
    stub = modal.App("failing-workers")

    def times_out(arguments: dict[str, Any], ctx: TenantContext) -> Envelope:
        raise modal.exception.FunctionTimeoutError("Function timed out")

    def crashes(arguments: dict[str, Any], ctx: TenantContext) -> Envelope:
        raise modal.exception.RemoteError("container exited")

    def not_an_envelope(arguments: dict[str, Any], ctx: TenantContext) -> Any:
        return {"raw": True}

    functions = {
        "embed": stub.function(serialized=True, name="embed")(times_out),
        "norm": stub.function(serialized=True, name="norm")(crashes),
        "explode": stub.function(serialized=True, name="explode")(not_an_envelope),
    }
    executor = ModalExecutor("failing-workers", functions=functions, local=True)
    app = deployment.source.load()
    context = TenantContext("acme-corp", "pro", "r-1")

    timed_out = asyncio.run(executor.run(app.functions["embed"], {"texts": []}, context))
    assert timed_out.timed_out
    assert timed_out.error == "FunctionTimeout"
    assert timed_out.compute_seconds == app.functions["embed"].options.timeout
    assert (timed_out.gpu_type, timed_out.gpu_count) == ("A100-80GB", 2)

    crashed = asyncio.run(executor.run(app.functions["norm"], {"point": {"x": 0, "y": 0}}, context))
    assert crashed.error == "RemoteError"
    assert not crashed.timed_out
    assert crashed.compute_seconds == 0.0

    odd = asyncio.run(executor.run(app.functions["explode"], {"n": 1}, context))
    assert odd.error == "InvalidWorkerResult"


def test_gateway_refuses_to_start_without_a_signing_key(
    deployment: ModalDeployment, container_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANTKIT_SIGNING_KEY")
    with pytest.raises(DeployError, match="TENANTKIT_SIGNING_KEY from Modal Secret 'tenantkit'"):
        gateway_app(
            deployment.source,
            starter_config(deployment, container_env),
            executor=ModalExecutor("x", local=True),
        )


def test_production_gateway_needs_a_postgres_url(
    deployment: ModalDeployment, container_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTKIT_DATABASE_URL", f"sqlite:///{container_env / 'x.db'}")
    config = GatewayConfig(deployment.plan.app_name, None, "production", "tenantkit")
    with pytest.raises(DeployError, match="production mode needs TENANTKIT_DATABASE_URL"):
        gateway_app(deployment.source, config, executor=ModalExecutor("x", local=True))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    from tests.pg import drop_schema, new_schema_name, require_postgres

    require_postgres(PG)
    schema = new_schema_name()
    sep = "&" if "?" in PG else "?"
    yield f"{PG}{sep}schema={schema}"
    drop_schema(PG, schema)


@pytest.mark.postgres
def test_registered_gateway_function_serves_in_production_mode(
    tmp_path: Path, container_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    """``gateway.local()`` runs the very body Modal runs in the container."""
    monkeypatch.setenv("TENANTKIT_DATABASE_URL", postgres_url)
    deployment = build_modal_deployment(
        load_gpu_app(tmp_path / "project"),
        Settings(database_url=postgres_url),
        DeployOptions(gateway_max_containers=3),
    )
    api = deployment.gateway.local()
    assert isinstance(api, FastAPI)
    executor = api.state.tenantkit.executor
    assert isinstance(executor, Executor)  # the workers' protocol
    assert isinstance(executor, ModalExecutor)
    assert not executor.local
    assert executor.app_name == "gpu-demo"

    async def health() -> httpx.Response:
        async with serving(api) as client:
            return await client.get("/health")

    response = asyncio.run(health())
    assert response.status_code == 200
    assert sorted(response.json()["functions"]) == ["embed", "explode", "norm", "reject"]


def test_snapshots_copy_only_changes_and_restore_a_consistent_file(tmp_path: Path) -> None:
    live = tmp_path / "live" / "records.db"
    stored = tmp_path / "volume" / "records.db"
    snapshots = SQLiteSnapshots(live, stored)
    assert snapshots.restore() is False
    db = open_database(f"sqlite:///{live}")
    try:
        with db.transaction() as tx:
            tx.create_tenant(Tenant("acme-corp", "Acme", "free", "active", 1.0, 1.0))
        assert snapshots.snapshot() is True
        assert snapshots.snapshot() is False  # nothing changed since
        with db.transaction() as tx:
            tx.create_tenant(Tenant("globex", "Globex", "pro", "active", 2.0, 2.0))
        assert snapshots.snapshot() is True
        assert snapshots.snapshot(force=True) is True
        assert snapshots.snapshots == 3
        assert not Path(f"{stored}-wal").exists()  # one self-contained file on the Volume
        assert stored.stat().st_mode & 0o777 == 0o600
    finally:
        db.close()
        snapshots.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    assert SQLiteSnapshots(live, stored).restore() is True
    assert live.stat().st_mode & 0o777 == 0o600
    reopened = open_database(f"sqlite:///{live}")
    try:
        with reopened.transaction(write=False) as tx:
            assert tx.get_tenant("globex") is not None
            assert tx.get_tenant("acme-corp") is not None
    finally:
        reopened.close()


def test_snapshots_run_on_their_interval_while_serving(tmp_path: Path) -> None:
    live = tmp_path / "live" / "records.db"
    stored = tmp_path / "volume" / "records.db"
    commits: list[int] = []

    async def commit() -> None:
        commits.append(1)

    snapshots = SQLiteSnapshots(live, stored, interval=0.01, commit=commit)
    db = open_database(f"sqlite:///{live}")

    async def scenario() -> int:
        async with snapshots.running():
            with db.transaction() as tx:
                tx.create_tenant(Tenant("acme-corp", "Acme", "free", "active", 1.0, 1.0))
            for _ in range(1000):  # wait for the loop, however slow the machine
                if snapshots.snapshots:
                    break
                await asyncio.sleep(0.01)
            return snapshots.snapshots

    try:
        assert asyncio.run(scenario()) >= 1  # written by the loop, before shutdown
    finally:
        db.close()
    assert len(commits) == snapshots.snapshots  # every snapshot committed, the last one too
    assert snapshots.snapshots >= 2


@pytest.mark.postgres
def test_gateway_body_serves_after_a_round_trip_through_modals_serializer(
    tmp_path: Path, postgres_url: str
) -> None:
    """What the gateway container does: unpickle the body, build the app from
    the uploaded file, serve. Here in a fresh interpreter, production mode."""
    from modal._serialization import serialize

    app_file = tmp_path / "project" / "gpu_app.py"
    load_gpu_app(app_file.parent)
    config = GatewayConfig("gpu-demo", None, "production", "tenantkit")
    payload = tmp_path / "gateway.pkl"
    payload.write_bytes(serialize(_gateway_body(AppSource(f"{app_file}::app"), config)))
    script = f"""
import asyncio, httpx
from modal._serialization import deserialize
api = deserialize(open({str(payload)!r}, "rb").read(), None)()
async def main():
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.get("/health")
            print(response.status_code, sorted(response.json()["functions"]))
    print(type(api.state.tenantkit.executor).__name__)
asyncio.run(main())
"""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TENANTKIT_") and k not in ("JWT_SECRET_KEY", "JWT_ALGORITHM")
    }
    env.update(
        TENANTKIT_DATABASE_URL=postgres_url,
        TENANTKIT_SIGNING_KEY=secrets.token_urlsafe(48),
        TENANTKIT_DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "200 ['embed', 'explode', 'norm', 'reject']",
        "ModalExecutor",
    ]


def test_a_workers_storage_change_is_its_net_change_since_it_arrived(tmp_path: Path) -> None:
    import pickle

    from tenantkit.config import DEFAULT_TIERS
    from tenantkit.deploy.runtime import storage_change
    from tenantkit.storage import storage_for

    settings = Settings(data_dir=tmp_path, database_url=None)
    db = open_database(settings.resolved_database_url())
    try:
        here = storage_for("acme-corp", DEFAULT_TIERS["free"], settings, db)
        here.write_bytes("old.bin", b"x" * 100)
        ctx = TenantContext("acme-corp", "free", "r-1", storage=here)
        assert storage_change(ctx) is None  # counted in the records database already
        shipped = pickle.loads(pickle.dumps(ctx))
        assert storage_change(shipped) is None  # nothing written yet
        shipped.storage.write_bytes("new.bin", b"y" * 30)
        shipped.storage.write_bytes("old.bin", b"x" * 40)  # replaced: 60 bytes fewer
        assert storage_change(shipped) == (30 - 60, 1)
        shipped.storage.delete("new.bin")
        shipped.storage.delete("old.bin")
        assert storage_change(shipped) == (-100, -1)
        assert storage_change(TenantContext("acme-corp", "free", "r-2")) is None
    finally:
        db.close()
