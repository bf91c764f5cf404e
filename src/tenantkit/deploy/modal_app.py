"""Build the ``modal.App``: one App holding the gateway and every worker.

The seed deployed its gateway and its workers as separate apps, so the
workers never reached Modal. Here one ``modal.App`` named after the
:class:`~tenantkit.workers.TenantApp` holds:

- ``gateway``: the same FastAPI app as ``tenantkit serve``, under
  ``@modal.asgi_app()`` and ``@modal.concurrent``, with the tenantkit Secret,
  ``min_containers`` / ``max_containers`` / ``scaledown_window`` and, in
  starter mode, the database Volume;
- one Modal Function per tenant function, named after it, with its ``gpu``,
  ``timeout``, ``memory``, ``cpu``, ``retries`` and secrets (the app's and
  its own; never the tenantkit Secret, so workers cannot mint keys), running
  :func:`tenantkit.deploy.runtime.run_worker`;
- one image: ``debian_slim`` + tenantkit's dependencies (pinned to this
  machine's versions) + the app's ``requirements`` + tenantkit's source + the
  app's folder (``.env``, ``.git``, virtualenvs and ``.tenantkit`` left out).

Every Modal Function is ``serialized=True``: its body is a small closure
over picklable values, and the container loads the user's file itself.
``modal`` is imported only when this module's functions run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tenantkit.deploy import runtime
from tenantkit.deploy.options import DeployOptions
from tenantkit.deploy.plan import DB_MOUNT, DeployPlan, plan
from tenantkit.deploy.runtime import GatewayConfig
from tenantkit.deploy.source import REMOTE_SOURCE_DIR, AppLocation, AppSource
from tenantkit.errors import DeployError

if TYPE_CHECKING:
    import modal

    from tenantkit.config import Settings
    from tenantkit.workers import Envelope, TenantApp, TenantContext

__all__ = ["ModalDeployment", "build_modal_app", "build_modal_deployment"]


@dataclass(frozen=True, slots=True)
class ModalDeployment:
    """A built ``modal.App`` and tenantkit's own record of what is in it.

    (``modal.App.registered_functions`` is deprecated; this is the registry
    tenantkit keeps instead.)

    Attributes:
        app: The ``modal.App``.
        plan: The plan it was built from.
        gateway: The gateway's Modal Function (ASGI web endpoint).
        workers: Tenant function name -> its Modal Function.
        gateway_config: What the gateway container is told.
        source: The app handle the containers load.
        gateway_options: The keyword arguments given to ``App.function`` for
            the gateway (its autoscaling is not visible in ``Function.info()``).
    """

    app: modal.App
    plan: DeployPlan
    gateway: modal.Function[..., Any, Any]
    workers: Mapping[str, modal.Function[..., Any, Any]]
    gateway_config: GatewayConfig
    source: AppSource
    gateway_options: Mapping[str, Any]


def _worker_body(
    source: AppSource, name: str, gpu_type: str | None, gpu_count: int
) -> Callable[[dict[str, Any], TenantContext], Envelope]:
    def worker(arguments: dict[str, Any], ctx: TenantContext) -> Envelope:
        return runtime.run_worker(
            source, name, arguments, ctx, gpu_type=gpu_type, gpu_count=gpu_count
        )

    worker.__name__ = worker.__qualname__ = f"tenantkit_worker_{name.replace('-', '_')}"
    return worker


def _gateway_body(source: AppSource, config: GatewayConfig) -> Callable[[], Any]:
    def gateway() -> Any:
        return runtime.gateway_app(source, config)

    gateway.__name__ = gateway.__qualname__ = "tenantkit_gateway"
    return gateway


def _image(deploy_plan: DeployPlan) -> modal.Image:
    import modal

    spec = deploy_plan.image
    image = modal.Image.debian_slim(python_version=spec.python_version).pip_install(*spec.packages)
    if spec.requirements:
        image = image.pip_install(*spec.requirements)
    image = image.add_local_python_source("tenantkit")
    if spec.source_dir is not None:
        image = image.add_local_dir(
            spec.source_dir, str(REMOTE_SOURCE_DIR), ignore=list(spec.ignored)
        )
    return image


def _modal_gpu(gpu_type: str | None, gpu_count: int) -> str | None:
    if gpu_type is None:
        return None
    return gpu_type if gpu_count == 1 else f"{gpu_type}:{gpu_count}"


def build_modal_deployment(
    app: TenantApp,
    settings: Settings,
    options: DeployOptions | None = None,
    *,
    location: AppLocation | Literal["auto"] | None = "auto",
) -> ModalDeployment:
    """Plan ``app``, refuse on errors, and build its ``modal.App``. Offline.

    Args:
        app: The app to deploy.
        settings: tenantkit settings (see :func:`tenantkit.deploy.plan`).
        options: Deploy-time choices.
        location: The app's file (``"auto"``: found from the loaded module).

    Raises:
        DeployError: if the plan has errors, or the app's file is unknown.
    """
    import modal

    options = options or DeployOptions()
    deploy_plan = plan(app, settings, options, location=location)
    deploy_plan.raise_for_errors()
    if deploy_plan.image.app_ref is None:
        raise DeployError(
            f"cannot deploy app {app.name!r}: the file defining it is unknown, so the "
            "containers could not load it"
        )
    source = AppSource(deploy_plan.image.app_ref, app)
    environment = options.environment
    modal_app = modal.App(deploy_plan.app_name, image=_image(deploy_plan), include_source=False)

    secrets: dict[str, modal.Secret] = {}

    def secret(name: str) -> modal.Secret:
        if name not in secrets:
            secrets[name] = modal.Secret.from_name(name, environment_name=environment)
        return secrets[name]

    workers: dict[str, modal.Function[..., Any, Any]] = {}
    for spec in deploy_plan.functions:
        body = _worker_body(source, spec.name, spec.gpu_type, spec.gpu_count)
        workers[spec.name] = modal_app.function(
            name=spec.modal_name,
            serialized=True,
            gpu=_modal_gpu(spec.gpu_type, spec.gpu_count),
            timeout=spec.timeout,
            memory=spec.memory,
            cpu=spec.cpu,
            retries=spec.retries or None,
            secrets=[secret(name) for name in spec.secrets],
        )(body)

    database = deploy_plan.database
    config = GatewayConfig(
        app_name=deploy_plan.app_name,
        environment=environment,
        mode=database.mode,
        secret_name=options.secret_name,
        db_volume=database.volume,
        commit_interval=database.commit_interval or options.commit_interval,
    )
    gateway_plan = deploy_plan.gateway
    volumes: dict[str | Any, modal.Volume] = {}
    if database.volume is not None:
        volumes[DB_MOUNT] = modal.Volume.from_name(
            database.volume, create_if_missing=True, environment_name=environment
        )
    gateway_options: dict[str, Any] = {
        "name": gateway_plan.modal_name,
        "serialized": True,
        "timeout": gateway_plan.timeout,
        "min_containers": gateway_plan.min_containers,
        "max_containers": gateway_plan.max_containers,
        "scaledown_window": gateway_plan.scaledown_window,
        "secrets": [secret(name) for name in gateway_plan.secrets],
        "volumes": volumes,
    }
    web = modal.asgi_app()(_gateway_body(source, config))
    concurrent: Any = modal.concurrent(max_inputs=gateway_plan.concurrency)(web)
    gateway: modal.Function[..., Any, Any] = modal_app.function(**gateway_options)(concurrent)
    return ModalDeployment(
        app=modal_app,
        plan=deploy_plan,
        gateway=gateway,
        workers=workers,
        gateway_config=config,
        source=source,
        gateway_options={
            k: v for k, v in gateway_options.items() if k not in ("secrets", "volumes")
        },
    )


def build_modal_app(
    app: TenantApp, settings: Settings, options: DeployOptions | None = None
) -> modal.App:
    """Build the ``modal.App`` for ``app`` (see :func:`build_modal_deployment`).

    Example:
        ``modal deploy`` can deploy it from a file of your own::

            # deploy_app.py
            from tenantkit.config import get_settings
            from tenantkit.deploy import build_modal_app
            from app import app as tenant_app

            app = build_modal_app(tenant_app, get_settings())

    Raises:
        DeployError: if the plan has errors.
    """
    return build_modal_deployment(app, settings, options).app
