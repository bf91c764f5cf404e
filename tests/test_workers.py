"""The decorator, the context and the local executor."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from tenantkit.config import DEFAULT_TIERS, Tier
from tenantkit.errors import ConfigurationError, ValidationError
from tenantkit.testing import call, make_context
from tenantkit.workers import (
    GPU_TYPES,
    Envelope,
    InvalidArguments,
    LocalExecutor,
    TenantApp,
    TenantContext,
    current_app,
    function_record,
    load_app,
    parse_gpu,
    run_in_envelope,
    tenant_function,
)


def noop() -> None:
    return None


@pytest.fixture
def app() -> TenantApp:
    return TenantApp("test-app")


# -- options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "kind", "count"),
    [
        ("A100", "A100", 1),
        ("A100-80GB", "A100-80GB", 1),
        ("a100-40gb", "A100-40GB", 1),
        ("H100:2", "H100", 2),
        ("h100!", "H100!", 1),
        ("any", "any", 1),
        ("T4", "T4", 1),
        ("L4", "L4", 1),
        ("A10G", "A10G", 1),
        ("L40S", "L40S", 1),
        ("H200", "H200", 1),
        ("B200:8", "B200", 8),
        ("B200+", "B200+", 1),
    ],
)
def test_modal_gpu_strings_are_accepted(app: TenantApp, gpu: str, kind: str, count: int) -> None:
    @app.tenant_function(gpu=gpu)
    def f() -> None: ...

    options = app.functions["f"].options
    assert (options.gpu_type, options.gpu_count) == (kind, count)
    assert options.gpu == gpu


@pytest.mark.parametrize("gpu", ["A1000", "", "H100:0", "H100:9", "H100:x", "gpu", "T4:-1", "3"])
def test_bad_gpu_strings_fail_at_decoration(app: TenantApp, gpu: str) -> None:
    with pytest.raises(ConfigurationError, match="gpu"):

        @app.tenant_function(gpu=gpu)
        def f() -> None: ...

    assert "f" not in app.functions


@given(kind=st.sampled_from(sorted(GPU_TYPES)), count=st.integers(1, 8), lower=st.booleans())
def test_gpu_parse_round_trip(kind: str, count: int, lower: bool) -> None:
    text = f"{kind.lower() if lower else kind}:{count}"
    parsed = parse_gpu(text)
    assert parsed == ("any" if kind == "ANY" else kind, count)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"tiers": {"platinum"}}, "unknown tier 'platinum'"),
        ({"tiers": set()}, "at least one tier"),
        ({"memory": -5}, "memory"),
        ({"cpu": 0}, "cpu"),
        ({"retries": -1}, "retries"),
        ({"path": "inference"}, "path"),
        ({"path": "/process"}, "tenantkit's own routes"),
        ({"path": "/admin/x"}, "tenantkit's own routes"),
        ({"name": "has space"}, "name"),
    ],
)
def test_invalid_options_fail_at_decoration(
    app: TenantApp, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.tenant_function(**options)(noop)


def test_options_are_keyword_only(app: TenantApp) -> None:
    with pytest.raises(TypeError):
        app.tenant_function(None, "A100")  # type: ignore[call-overload]


def test_tiers_are_checked_against_the_apps_table() -> None:
    tiers = {"basic": Tier("basic", 10, 2, 1, 60, 1000, 10)}
    custom = TenantApp("custom", tiers=tiers)

    @custom.tenant_function(tiers={"basic"})
    def ok() -> None: ...

    with pytest.raises(ConfigurationError, match="unknown tier 'pro'"):
        custom.tenant_function(tiers={"pro"})(noop)


def test_duplicate_names_and_paths_are_refused(app: TenantApp) -> None:
    @app.tenant_function(path="/inference")
    def infer() -> None: ...

    with pytest.raises(ConfigurationError, match="exists"):
        app.tenant_function(name="infer")(noop)
    with pytest.raises(ConfigurationError, match="already served"):
        app.tenant_function(name="other", path="/inference")(noop)


@pytest.mark.parametrize(
    "source",
    ["def f(*args): ...", "def f(**kwargs): ...", "def f(a, /): ...", "def f():\n    yield 1"],
)
def test_signatures_a_body_cannot_express_are_refused(app: TenantApp, source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(ConfigurationError):
        app.tenant_function(namespace["f"])


# -- the decorated function ----------------------------------------------------


def test_module_level_decorator_registers_on_the_latest_app() -> None:
    first = TenantApp("first")
    second = TenantApp("second")

    @tenant_function
    def bare(x: int) -> int:
        return x

    @tenant_function(timeout=5)
    def configured(x: int) -> int:
        return x

    assert current_app() is second
    assert set(second.functions) == {"bare", "configured"}
    assert not first.functions


def test_decorated_function_stays_plain_callable(app: TenantApp) -> None:
    @app.tenant_function(timeout=5)
    def double(x: int, ctx: TenantContext) -> dict[str, Any]:
        return {"value": 2 * x, "tenant": ctx.tenant_id}

    assert double(4, make_context("acme-corp")) == {"value": 8, "tenant": "acme-corp"}
    assert function_record(double) is app.functions["double"]
    assert function_record(len) is None


class Point(BaseModel):
    x: float
    y: float


def test_arguments_are_validated_from_type_hints(app: TenantApp) -> None:
    @app.tenant_function
    def norm(
        p: Point,
        scale: Annotated[float, Field(gt=0)] = 1.0,
        model_name: str = "m",
        json: int = 0,
        ctx: TenantContext | None = None,
    ) -> float:
        return float((p.x**2 + p.y**2) ** 0.5 * scale)

    record = app.functions["norm"]
    assert record.context_param == "ctx"  # `TenantContext | None` is injected too
    assert call(norm, {"p": {"x": 3, "y": "4"}}) == 5.0
    assert record.validate({"p": {"x": 1, "y": 1}, "json": "3"})["json"] == 3
    with pytest.raises(InvalidArguments) as info:
        record.validate({"p": {"x": "a"}, "scale": 0, "extra": 1})
    locs = {tuple(e["loc"]) for e in info.value.errors}
    assert {("p", "x"), ("p", "y"), ("scale",), ("extra",)} <= locs
    assert info.value.status == 422
    with pytest.raises(InvalidArguments):
        record.validate([1, 2])
    schema = record.input_schema()
    assert set(schema["properties"]) == {"p", "scale", "model_name", "json"}


def test_context_is_injected_never_read_from_the_body(app: TenantApp) -> None:
    @app.tenant_function
    def who(ctx: TenantContext, n: int = 1) -> str:
        return f"{ctx.tenant_id}:{n}"

    record = app.functions["who"]
    assert record.context_param == "ctx"
    assert "ctx" not in record.input_schema()["properties"]
    with pytest.raises(InvalidArguments):
        record.validate({"ctx": {"tenant_id": "evil"}})
    assert call(who, {"n": 2}, ctx=make_context("acme-corp")) == "acme-corp:2"


def test_async_functions(app: TenantApp) -> None:
    @app.tenant_function
    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert app.functions["later"].is_async
    assert call(later, {"x": 1}) == 2


def test_context_and_function_records_pickle(app: TenantApp) -> None:
    ctx = make_context("acme-corp", "pro", scopes=("functions:*",))
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    record = pickle.loads(pickle.dumps(_module_app.functions["module_fn"]))
    assert record.name == "module_fn"
    assert record.validate({"x": "3"}) == {"x": 3}


_module_app = TenantApp("module-app")


@_module_app.tenant_function(timeout=3)
def module_fn(x: int) -> int:
    return x


# -- executors ---------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_local_executor_measures_the_function_only(app: TenantApp) -> None:
    @app.tenant_function
    def nap(seconds: float) -> str:
        time.sleep(seconds)
        return threading.current_thread().name

    executor = LocalExecutor(max_workers=2)
    try:
        envelope = run(executor.run(app.functions["nap"], {"seconds": 0.05}, make_context()))
    finally:
        executor.close()
    assert envelope.ok
    assert envelope.value.startswith("tenantkit")  # ran off the event loop
    assert 0.05 <= envelope.compute_seconds < 5
    assert envelope.gpu_type is None
    assert envelope.gpu_count == 0
    assert envelope.gpu_seconds == 0


def test_local_executor_enforces_the_timeout(app: TenantApp) -> None:
    release = threading.Event()

    @app.tenant_function(timeout=0.1)
    def stuck() -> None:
        release.wait(10)

    @app.tenant_function(timeout=0.1)
    async def stuck_async() -> None:
        await asyncio.sleep(10)

    executor = LocalExecutor()
    try:
        for name in ("stuck", "stuck_async"):
            envelope = run(executor.run(app.functions[name], {}, make_context()))
            assert envelope.timed_out
            assert not envelope.ok
            assert envelope.compute_seconds >= 0.09
    finally:
        release.set()
        executor.close()


def test_errors_are_reduced_to_their_type_name(app: TenantApp) -> None:
    attempts: list[int] = []

    @app.tenant_function(retries=2)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("internal secret")
        return "ok"

    @app.tenant_function
    def broken() -> None:
        raise KeyError("internal secret")

    @app.tenant_function
    async def broken_async() -> None:
        raise ValueError("internal secret")

    @app.tenant_function
    def refuses() -> None:
        raise ValidationError("items must not be empty")

    ctx = make_context()
    assert run_in_envelope(app.functions["flaky"], {}, ctx).value == "ok"
    assert len(attempts) == 3
    executor = LocalExecutor()
    try:
        for name, error in (("broken", "KeyError"), ("broken_async", "ValueError")):
            envelope = run(executor.run(app.functions[name], {}, ctx))
            assert envelope.error == error
            assert envelope.problem is None
            assert "secret" not in repr(envelope)
        envelope = run(executor.run(app.functions["refuses"], {}, ctx))
        assert envelope.problem is not None
        assert envelope.problem["status"] == 422
        assert envelope.problem["detail"] == "items must not be empty"
    finally:
        executor.close()


def test_run_in_envelope_reports_the_gpu(app: TenantApp) -> None:
    @app.tenant_function(gpu="A100:2")
    def gpu_fn() -> int:
        time.sleep(0.01)
        return 1

    envelope = run_in_envelope(
        app.functions["gpu_fn"], {}, make_context(), gpu_type="A100", gpu_count=2
    )
    assert isinstance(envelope, Envelope)
    assert envelope.gpu_seconds == pytest.approx(envelope.compute_seconds * 2)


# -- discovery -------------------------------------------------------------------------


def test_load_app_finds_the_app_like_modal(tmp_path: Path) -> None:
    (tmp_path / "helper_mod_x1.py").write_text("VALUE = 41\n")
    (tmp_path / "svc_x1.py").write_text(
        "from tenantkit.workers import TenantApp, tenant_function\n"
        "import helper_mod_x1\n"
        "app = TenantApp('svc')\n"
        "other = TenantApp('other')\n"
        "@app.tenant_function\n"
        "def f() -> int:\n"
        "    return helper_mod_x1.VALUE + 1\n"
    )
    loaded = load_app(str(tmp_path / "svc_x1.py"))
    assert loaded.name == "svc"
    assert load_app(str(tmp_path / "svc_x1.py")) is loaded  # idempotent
    assert load_app(f"{tmp_path / 'svc_x1.py'}::other").name == "other"
    with pytest.raises(ConfigurationError, match="no TenantApp named"):
        load_app(f"{tmp_path / 'svc_x1.py'}::missing")
    with pytest.raises(ConfigurationError, match="no such file"):
        load_app(str(tmp_path / "absent.py"))
    (tmp_path / "none_x1.py").write_text("x = 1\n")
    with pytest.raises(ConfigurationError, match="defines no TenantApp"):
        load_app(str(tmp_path / "none_x1.py"))


def test_default_tiers_are_the_seeds() -> None:
    assert TenantApp("t").tiers == dict(DEFAULT_TIERS)


def test_finish_runs_once_for_every_call(app: TenantApp) -> None:
    gate = threading.Event()

    @app.tenant_function(timeout=0.05)
    def blocked() -> None:
        gate.wait(5)

    finished: list[int] = []
    executor = LocalExecutor(max_workers=1)

    async def main() -> list[Envelope]:
        calls = [
            executor.run(
                app.functions["blocked"], {}, make_context(), finish=lambda: finished.append(1)
            )
            for _ in range(3)
        ]
        return list(await asyncio.gather(*calls))

    try:
        envelopes = run(main())
        assert all(e.timed_out for e in envelopes)
        # two calls never reached the single thread: finished at once; the third when it returns
        assert len(finished) == 2
        gate.set()
        for _ in range(500):
            if len(finished) == 3:
                break
            time.sleep(0.01)
        assert len(finished) == 3
    finally:
        gate.set()
        executor.close()
