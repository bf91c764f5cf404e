"""The deploy plan: everything ``tenantkit deploy`` would create, checked offline.

:func:`plan` needs no network and no Modal account. It lists every function
with its GPU, timeout, memory and routes, the gateway's scaling, the
secrets, the volumes, the database mode and what that mode means for
durability, and every problem found. Problems of level ``"error"`` stop a
deploy before anything is uploaded.

Example:
    >>> from tenantkit.config import Settings
    >>> from tenantkit.workers import TenantApp
    >>> app = TenantApp("docs-demo")
    >>> @app.tenant_function(gpu="A100", timeout=600)
    ... def embed(texts: list[str]) -> int:
    ...     return len(texts)
    >>> p = plan(app, Settings(), location=None)
    >>> p.database.mode, p.functions[0].gpu_type, p.functions[0].timeout
    ('starter', 'A100', 600)
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tenantkit.config import Settings
from tenantkit.deploy.image import (
    IGNORED_SOURCE_PATTERNS,
    default_python_version,
    missing_requirements,
    tenantkit_packages,
)
from tenantkit.deploy.options import DatabaseMode, DeployOptions
from tenantkit.deploy.source import REMOTE_SOURCE_DIR, AppLocation, locate_app
from tenantkit.errors import ConfigurationError, DeployError

if TYPE_CHECKING:
    from tenantkit.workers import TenantApp, TenantFunction

__all__ = [
    "DB_MOUNT",
    "GATEWAY_FUNCTION",
    "MAX_TIMEOUT",
    "DatabasePlan",
    "DeployPlan",
    "FunctionPlan",
    "GatewayPlan",
    "ImagePlan",
    "Problem",
    "VolumePlan",
    "plan",
    "valid_modal_name",
]

#: Name of the gateway's Modal Function (tenant functions may not use it).
GATEWAY_FUNCTION = "gateway"
#: Where starter mode mounts the Volume holding the SQLite snapshot.
DB_MOUNT = "/tenantkit-db"
#: Where starter mode keeps the live SQLite file (container-local disk).
LIVE_DB_PATH = "/tmp/tenantkit/tenantkit.db"  # noqa: S108 - container-local by design
#: Modal's longest function timeout (24 hours).
MAX_TIMEOUT = 24 * 60 * 60
_MODAL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_APP_ID = re.compile(r"ap-[A-Za-z0-9]{22}")


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong (``"error"``: deploy refused) or worth knowing (``"warning"``)."""

    level: Literal["error", "warning"]
    message: str


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """One tenant function as a Modal Function.

    Attributes:
        name: The tenant function's name (``task_type``).
        modal_name: The Modal Function's name.
        gpu: GPU string passed to Modal (``None``: CPU only).
        gpu_type: Normalised GPU type.
        gpu_count: GPUs per container.
        timeout: Seconds (whole, as Modal takes them).
        memory: MiB requested (``None``: Modal's default).
        cpu: Cores requested (``None``: Modal's default).
        retries: Attempts after an exception (in the container) and after a
            container failure (by Modal).
        secrets: Modal Secrets attached: the app's and the function's.
        routes: HTTP routes that reach it.
        tiers: Tiers allowed to call it (``None``: all).
    """

    name: str
    modal_name: str
    gpu: str | None
    gpu_type: str | None
    gpu_count: int
    timeout: int
    memory: int | None
    cpu: float | None
    retries: int
    secrets: tuple[str, ...]
    routes: tuple[str, ...]
    tiers: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """The gateway: the FastAPI app as a Modal ASGI web endpoint.

    Attributes:
        modal_name: The Modal Function's name.
        min_containers: Containers kept warm.
        max_containers: Upper bound (``None``: Modal's).
        scaledown_window: Seconds an idle container stays up.
        concurrency: Requests one container serves at once.
        timeout: Seconds one request may take (default: the longest call,
            timeout x attempts, plus a minute).
        secrets: Modal Secrets attached (the tenantkit secret only: the
            gateway holds the signing key, workers never do).
        volumes: Mount path -> Volume name.
    """

    modal_name: str
    min_containers: int
    max_containers: int | None
    scaledown_window: int
    concurrency: int
    timeout: int
    secrets: tuple[str, ...]
    volumes: dict[str, str]


@dataclass(frozen=True, slots=True)
class DatabasePlan:
    """Where the records live once deployed, and what survives a crash.

    Attributes:
        mode: ``"starter"`` or ``"production"``.
        url: The URL the gateway uses, or where it comes from.
        volume: Starter: the Volume holding the SQLite snapshot.
        commit_interval: Starter: seconds between snapshots.
        strategy: Modal deployment strategy (``recreate`` in starter mode, so
            two gateways never write the file at once; ``rolling`` otherwise).
        durability: One sentence on what a crash can lose.
    """

    mode: DatabaseMode
    url: str
    volume: str | None
    commit_interval: float | None
    strategy: Literal["recreate", "rolling"]
    durability: str


@dataclass(frozen=True, slots=True)
class VolumePlan:
    """A Modal Volume the deployment uses.

    Attributes:
        name: The Volume's name (a pattern for per-tenant ones).
        mount: Where it is mounted (``None``: reached through the Volume API).
        used_by: Which functions use it.
        purpose: What it holds.
    """

    name: str
    mount: str | None
    used_by: str
    purpose: str


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """The container image shared by the gateway and the workers.

    Attributes:
        python_version: Python series of the ``debian_slim`` base.
        packages: tenantkit's own dependencies, pinned to this machine's versions.
        requirements: The app's ``requirements``.
        source_dir: Local folder uploaded as the app's source.
        remote_source_dir: Where it lands in the container.
        app_ref: How containers load the app (``file::variable``).
        ignored: Patterns never uploaded (``.env``, ``.git``, virtualenvs...).
    """

    python_version: str
    packages: tuple[str, ...]
    requirements: tuple[str, ...]
    source_dir: str | None
    remote_source_dir: str
    app_ref: str | None
    ignored: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeployPlan:
    """Everything a deploy creates, and the problems found.

    Attributes:
        app_name: The Modal App's name (the TenantApp's).
        environment: Modal environment (``None``: the profile's).
        gateway: The gateway function.
        functions: One entry per tenant function, by name.
        secrets: Every Modal Secret referenced (each must exist on Modal).
        volumes: Every Volume used.
        database: The database mode and its consequences.
        storage: How tenants' files are stored.
        image: The container image.
        problems: Errors and warnings, errors first.
    """

    app_name: str
    environment: str | None
    gateway: GatewayPlan
    functions: tuple[FunctionPlan, ...]
    secrets: tuple[str, ...]
    volumes: tuple[VolumePlan, ...]
    database: DatabasePlan
    storage: str
    image: ImagePlan
    problems: tuple[Problem, ...] = field(default=())

    @property
    def errors(self) -> list[str]:
        """Messages of the problems that stop a deploy."""
        return [p.message for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[str]:
        """Messages of the problems worth reading."""
        return [p.message for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        """Whether nothing stops a deploy."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise if the plan has errors.

        Raises:
            DeployError: listing every error, one per line.
        """
        errors = self.errors
        if errors:
            listed = "\n".join(f"  - {message}" for message in errors)
            noun = "problem" if len(errors) == 1 else "problems"
            raise DeployError(f"the deploy plan has {len(errors)} {noun}:\n{listed}")

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (what ``--dry-run --json`` prints)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["errors"] = self.errors
        data["warnings"] = self.warnings
        return data


def _routes(function: TenantFunction) -> tuple[str, ...]:
    routes = [f"POST /functions/{function.name}", f"POST /process (task_type={function.name})"]
    if function.options.path:
        routes.insert(0, f"POST {function.options.path}")
    return tuple(routes)


def valid_modal_name(name: str) -> bool:
    """Whether ``name`` is a valid Modal object name (App, Secret, Volume).

    Example:
        >>> valid_modal_name("multi-tenant-saas"), valid_modal_name("my app")
        (True, False)
    """
    return _MODAL_NAME.fullmatch(name) is not None and _APP_ID.fullmatch(name) is None


def _check_name(kind: str, name: str, problems: list[Problem]) -> None:
    if not name:
        problems.append(Problem("error", f"missing {kind} name"))
    elif not valid_modal_name(name):
        problems.append(
            Problem(
                "error",
                f"invalid {kind} name {name!r}: Modal names are 1-64 letters, digits, "
                "'-', '_' or '.'",
            )
        )


def _function_plan(
    function: TenantFunction, app_secrets: tuple[str, ...], problems: list[Problem]
) -> FunctionPlan:
    from tenantkit.workers import parse_gpu

    options = function.options
    gpu_type: str | None = None
    gpu_count = 0
    if options.gpu is not None:
        try:
            gpu_type, gpu_count = parse_gpu(options.gpu)
        except ConfigurationError as exc:
            problems.append(Problem("error", f"function {function.name!r}: {exc}"))
    timeout = max(1, math.ceil(options.timeout))
    if timeout > MAX_TIMEOUT:
        problems.append(
            Problem(
                "error",
                f"function {function.name!r}: timeout {options.timeout:g}s is over Modal's "
                f"limit of {MAX_TIMEOUT}s (24 hours)",
            )
        )
    if function.name == GATEWAY_FUNCTION:
        problems.append(
            Problem(
                "error",
                f"function name {GATEWAY_FUNCTION!r} is taken by tenantkit's gateway; "
                "give it another with @tenant_function(name=...)",
            )
        )
    elif len(function.name) > 64:
        problems.append(
            Problem("error", f"function name {function.name!r} is over Modal's 64 characters")
        )
    secrets = tuple(dict.fromkeys((*app_secrets, *options.secrets)))
    for secret in options.secrets:
        _check_name(f"secret (function {function.name!r})", secret, problems)
    return FunctionPlan(
        name=function.name,
        modal_name=function.name,
        gpu=options.gpu,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        timeout=timeout,
        memory=options.memory,
        cpu=options.cpu,
        retries=options.retries,
        secrets=secrets,
        routes=_routes(function),
        tiers=tuple(sorted(options.tiers)) if options.tiers is not None else None,
    )


def _local_state_patterns(settings: Settings, source_dir: Path) -> tuple[str, ...]:
    """Ignore patterns for local state kept inside the uploaded folder under
    another name than ``.tenantkit``: the data dir (signing key, records,
    tenants' files) and a SQLite records file, with its journals."""
    places: list[Path] = [Path(settings.data_dir)]
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///") and ":memory:" not in url:
        database = Path(url.removeprefix("sqlite:///"))
        places += [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm")]
    root = source_dir.resolve()
    patterns: list[str] = []
    for place in places:
        try:
            relative = place.resolve().relative_to(root)
        except ValueError:
            continue  # outside the folder: never uploaded
        if relative.parts:
            patterns.append(relative.as_posix())
    return tuple(dict.fromkeys(patterns))


def _is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def _database_plan(
    app_name: str, settings: Settings, options: DeployOptions, problems: list[Problem]
) -> DatabasePlan:
    local_url = settings.database_url
    mode: DatabaseMode = options.database or (
        "production" if _is_postgres(local_url) else "starter"
    )
    if mode == "starter":
        if options.database == "starter" and _is_postgres(local_url):
            problems.append(
                Problem(
                    "error",
                    "database mode mismatch: TENANTKIT_DATABASE_URL is PostgreSQL but the "
                    "mode is starter (SQLite); deploy with --database production",
                )
            )
        max_containers = options.gateway_max_containers
        if max_containers is not None and max_containers != 1:
            problems.append(
                Problem(
                    "error",
                    f"database mode mismatch: starter mode keeps SQLite in one gateway "
                    f"container, but max containers is {max_containers}; use 1, or "
                    "--database production (PostgreSQL) to scale out",
                )
            )
        if options.gateway_min_containers > 1:
            problems.append(
                Problem(
                    "error",
                    f"database mode mismatch: starter mode runs one gateway container, but "
                    f"min containers is {options.gateway_min_containers}",
                )
            )
        if not options.commit_interval > 0:
            problems.append(Problem("error", "commit interval must be a positive number"))
        volume = options.db_volume or f"{app_name}-db"
        _check_name("database volume", volume, problems)
        interval = options.commit_interval
        return DatabasePlan(
            mode="starter",
            url=f"sqlite:///{LIVE_DB_PATH} (snapshot to Volume {volume!r} at {DB_MOUNT})",
            volume=volume,
            commit_interval=interval,
            strategy="recreate",
            durability=(
                f"SQLite on the gateway container's disk, copied to the Volume every "
                f"{interval:g}s and when the container stops; a hard crash loses at most "
                f"the last {interval:g}s of records. One gateway container only."
            ),
        )
    if local_url and not _is_postgres(local_url):
        problems.append(
            Problem(
                "error",
                "database mode mismatch: production mode needs PostgreSQL, but "
                f"TENANTKIT_DATABASE_URL is {local_url.split(':', 1)[0]}:...; unset it or "
                "deploy with --database starter",
            )
        )
    problems.append(
        Problem(
            "warning",
            f"production mode: the gateway reads TENANTKIT_DATABASE_URL (postgresql://...) "
            f"from Modal Secret {options.secret_name!r}; it is checked when the gateway "
            "starts, not here (no local value is uploaded)",
        )
    )
    return DatabasePlan(
        mode="production",
        url=f"TENANTKIT_DATABASE_URL from Modal Secret {options.secret_name!r}",
        volume=None,
        commit_interval=None,
        strategy="rolling",
        durability=(
            "PostgreSQL: every record is durable once its transaction commits; "
            "gateway containers scale out."
        ),
    )


def _tenant_volume_pattern(app_name: str) -> str:
    from tenantkit.storage.modal_volume import volume_name

    example = "tenant-id"
    return volume_name(app_name, example).removesuffix(example) + "<tenant-id>"


def plan(
    app: TenantApp,
    settings: Settings,
    options: DeployOptions | None = None,
    *,
    location: AppLocation | Literal["auto"] | None = "auto",
) -> DeployPlan:
    """Check ``app`` for Modal and describe the deployment, offline.

    Args:
        app: The app to deploy.
        settings: tenantkit settings (only the database URL is consulted,
            to choose the mode; no local secret is ever uploaded).
        options: Deploy-time choices (defaults: see :class:`DeployOptions`).
        location: Where the app's file is; ``"auto"`` finds it, ``None``
            skips the source checks (for apps built in memory).

    Returns:
        The plan; check :attr:`DeployPlan.ok` or call
        :meth:`DeployPlan.raise_for_errors`.
    """
    options = options or DeployOptions()
    problems: list[Problem] = []
    _check_name("app", app.name, problems)
    _check_name("secret", options.secret_name, problems)
    app_secrets = tuple(app.secrets)
    for secret in app_secrets:
        _check_name("secret (app)", secret, problems)

    functions = tuple(
        _function_plan(function, app_secrets, problems)
        for function in sorted(app.functions.values(), key=lambda f: f.name)
    )
    if not functions:
        problems.append(
            Problem("warning", f"app {app.name!r} has no tenant functions; only the gateway runs")
        )

    exposed = sorted(f.name for f in functions if options.secret_name in f.secrets)
    if options.secret_name and exposed:
        problems.append(
            Problem(
                "error",
                f"Modal Secret {options.secret_name!r} holds tenantkit's signing and admin keys "
                f"but is also attached to {', '.join(repr(n) for n in exposed)}: code there "
                "could mint API keys; give the functions a Secret of their own",
            )
        )

    database = _database_plan(app.name, settings, options, problems)

    if not 2 <= options.gateway_scaledown_window <= 3600:
        problems.append(
            Problem(
                "error",
                "scaledown window must be 2 to 3600 seconds, not "
                f"{options.gateway_scaledown_window}",
            )
        )
    if options.gateway_min_containers < 0:
        problems.append(Problem("error", "min containers cannot be negative"))
    max_containers = options.gateway_max_containers
    if database.mode == "starter":
        max_containers = 1
    if max_containers is not None and max_containers < 1:
        problems.append(Problem("error", "max containers must be at least 1"))
    if max_containers is not None and options.gateway_min_containers > max_containers > 0:
        problems.append(Problem("error", "min containers cannot exceed max containers"))
    if options.gateway_concurrency < 1:
        problems.append(Problem("error", "gateway concurrency must be at least 1"))
    # Modal retries an input whose container failed or timed out, so one call can
    # take (retries + 1) timeouts; the gateway waits for all of them.
    longest = max((f.timeout * (f.retries + 1) for f in functions), default=0)
    gateway_timeout = options.gateway_timeout or min(MAX_TIMEOUT, max(300, longest + 60))
    if gateway_timeout > MAX_TIMEOUT or gateway_timeout < 1:
        problems.append(Problem("error", f"gateway timeout must be 1 to {MAX_TIMEOUT} seconds"))
    elif gateway_timeout < longest:
        problems.append(
            Problem(
                "warning",
                f"gateway timeout {gateway_timeout}s is shorter than the longest call "
                f"(timeout x attempts: {longest}s); such calls fail at the gateway first",
            )
        )

    gateway_volumes = {DB_MOUNT: database.volume} if database.volume else {}
    gateway = GatewayPlan(
        modal_name=GATEWAY_FUNCTION,
        min_containers=options.gateway_min_containers,
        max_containers=max_containers,
        scaledown_window=options.gateway_scaledown_window,
        concurrency=options.gateway_concurrency,
        timeout=gateway_timeout,
        secrets=(options.secret_name,),
        volumes=gateway_volumes,
    )

    volumes: list[VolumePlan] = []
    if database.volume:
        volumes.append(
            VolumePlan(database.volume, DB_MOUNT, GATEWAY_FUNCTION, "records (SQLite snapshot)")
        )
    volumes.append(
        VolumePlan(
            _tenant_volume_pattern(app.name),
            None,
            "gateway and workers",
            "one per tenant, created on first use (tenant files)",
        )
    )

    found: AppLocation | None = None
    if location == "auto":
        try:
            found = locate_app(app, options.source_dir)
        except DeployError as exc:
            problems.append(Problem("error", str(exc)))
    else:
        found = location
    extras = ("postgres",) if database.mode == "production" else ()
    image = ImagePlan(
        python_version=options.python_version or default_python_version(),
        packages=tenantkit_packages(extras),
        requirements=tuple(app.requirements),
        source_dir=str(found.source_dir) if found else None,
        remote_source_dir=str(REMOTE_SOURCE_DIR),
        app_ref=found.remote_ref if found else None,
        ignored=IGNORED_SOURCE_PATTERNS
        + (_local_state_patterns(settings, found.source_dir) if found else ()),
    )
    if found is not None:
        for module, distribution in missing_requirements(
            found.file, found.source_dir, image.requirements, image.packages
        ):
            problems.append(
                Problem(
                    "warning",
                    f"{found.file.name} imports {module!r} ({distribution}), which the app's "
                    f"requirements do not list; the containers would fail to import it "
                    f'(add it: TenantApp(..., requirements=["{distribution}"]))',
                )
            )
    if found is not None and _looks_like_home(found.source_dir):
        problems.append(
            Problem(
                "error",
                f"the source folder {found.source_dir} looks like a home or root folder; "
                "put the app in a project folder",
            )
        )

    secrets = tuple(
        sorted({options.secret_name, *app_secrets, *(s for f in functions for s in f.secrets)})
    )
    ordered = tuple(sorted(problems, key=lambda p: p.level != "error"))
    return DeployPlan(
        app_name=app.name,
        environment=options.environment,
        gateway=gateway,
        functions=functions,
        secrets=tuple(s for s in secrets if s),
        volumes=tuple(volumes),
        database=database,
        storage=(
            "Modal Volume per tenant, through the Volume API (gateway and workers reach "
            "the same files)"
        ),
        image=image,
        problems=ordered,
    )


def _looks_like_home(folder: Path) -> bool:
    return folder == Path(folder.anchor) or folder == Path.home()
