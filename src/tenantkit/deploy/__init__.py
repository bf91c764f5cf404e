"""Deploying a tenantkit app to Modal: the plan, the ``modal.App``, the executor.

``import tenantkit.deploy`` does not import ``modal``; only building,
deploying and running on Modal do::

    from tenantkit.config import get_settings
    from tenantkit.deploy import build_modal_app, plan

    p = plan(app, get_settings())          # offline: functions, secrets, volumes, problems
    p.raise_for_errors()
    modal_app = build_modal_app(app, get_settings())   # one modal.App: gateway + workers

Database modes (see :class:`DeployOptions`):

- **starter**: SQLite on the gateway container's disk, snapshotted to a Modal
  Volume every few seconds and on shutdown; one gateway container
  (``max_containers=1``); deployed with the ``recreate`` strategy.
- **production**: PostgreSQL from ``TENANTKIT_DATABASE_URL`` in the Modal
  Secret; the gateway scales out; ``rolling`` deploys.
"""

from __future__ import annotations

from tenantkit.deploy.commands import (
    NO_CREDENTIALS,
    CreatedSecret,
    DeployResult,
    create_secret,
    deploy,
    has_modal_credentials,
    require_modal_credentials,
)
from tenantkit.deploy.executor import ModalExecutor
from tenantkit.deploy.modal_app import ModalDeployment, build_modal_app, build_modal_deployment
from tenantkit.deploy.options import DEFAULT_SECRET_NAME, DatabaseMode, DeployOptions
from tenantkit.deploy.plan import (
    DatabasePlan,
    DeployPlan,
    FunctionPlan,
    GatewayPlan,
    ImagePlan,
    Problem,
    VolumePlan,
    plan,
)
from tenantkit.deploy.runtime import GatewayConfig, SQLiteSnapshots
from tenantkit.deploy.source import AppLocation, AppSource, locate_app

__all__ = [
    "DEFAULT_SECRET_NAME",
    "NO_CREDENTIALS",
    "AppLocation",
    "AppSource",
    "CreatedSecret",
    "DatabaseMode",
    "DatabasePlan",
    "DeployOptions",
    "DeployPlan",
    "DeployResult",
    "FunctionPlan",
    "GatewayConfig",
    "GatewayPlan",
    "ImagePlan",
    "ModalDeployment",
    "ModalExecutor",
    "Problem",
    "SQLiteSnapshots",
    "VolumePlan",
    "build_modal_app",
    "build_modal_deployment",
    "create_secret",
    "deploy",
    "has_modal_credentials",
    "locate_app",
    "plan",
    "require_modal_credentials",
]
