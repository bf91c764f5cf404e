"""Where an app's code comes from, locally and inside a Modal container.

Modal runs the gateway and every worker in containers that import the
user's file again. :func:`locate_app` finds the file and the variable that
holds a :class:`~tenantkit.workers.TenantApp`; :class:`AppSource` is the
picklable handle a container uses to load the same app from the uploaded
copy (``/root/project/<file>``), while in this process it hands back the live
object.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tenantkit.errors import DeployError

if TYPE_CHECKING:
    from tenantkit.workers import TenantApp

__all__ = ["REMOTE_SOURCE_DIR", "AppLocation", "AppSource", "locate_app"]

REMOTE_SOURCE_DIR = PurePosixPath("/root/project")


@dataclass(frozen=True, slots=True)
class AppLocation:
    """The file and variable holding an app, and the folder uploaded with it.

    Attributes:
        file: Absolute path of the Python file that defines the app.
        variable: Name of the module-level variable holding it.
        source_dir: Folder uploaded to the containers (contains ``file``).
    """

    file: Path
    variable: str
    source_dir: Path

    @property
    def relative_file(self) -> PurePosixPath:
        """``file`` relative to ``source_dir``, ``/``-separated."""
        return PurePosixPath(self.file.relative_to(self.source_dir).as_posix())

    @property
    def remote_ref(self) -> str:
        """How a container names the app: ``/root/project/app.py::app``."""
        return f"{REMOTE_SOURCE_DIR / self.relative_file}::{self.variable}"


def _module_of(app: TenantApp) -> tuple[ModuleType, str] | None:
    candidates: list[str] = [f.fn.__module__ for f in app.functions.values()]
    candidates.extend(name for name in list(sys.modules) if name not in candidates)
    for module_name in candidates:
        if module_name == "tenantkit" or module_name.startswith("tenantkit."):
            continue  # tenantkit's own references (the current app), not a definition
        module = sys.modules.get(module_name)
        if module is None or getattr(module, "__file__", None) is None:
            continue
        for variable, value in list(vars(module).items()):
            if value is app:
                return module, variable
    return None


def locate_app(app: TenantApp, source_dir: Path | None = None) -> AppLocation:
    """Find the file and module-level variable that define ``app``.

    Args:
        app: A loaded app.
        source_dir: Folder to upload; defaults to the app file's folder.

    Raises:
        DeployError: if the app is not a module-level variable of a file, or
            the file lies outside ``source_dir``.
    """
    found = _module_of(app)
    if found is None:
        raise DeployError(
            f"cannot find the file defining app {app.name!r}: a deployed app must be a "
            "module-level variable in a .py file (e.g. `app = TenantApp(...)` in app.py)"
        )
    module, variable = found
    file = Path(str(module.__file__)).resolve()
    root = (source_dir or file.parent).resolve()
    if not file.is_relative_to(root):
        raise DeployError(f"the app file {file} is not inside the source folder {root}")
    return AppLocation(file=file, variable=variable, source_dir=root)


class AppSource:
    """A picklable handle on an app: the live object here, a file ref there.

    Pickling keeps only ``ref``; the unpickled handle (in a container) loads
    the app from that file once and caches it.

    Args:
        ref: ``path/to/app.py::variable`` as seen by the container.
        app: The live app, when this process already has it.
    """

    __slots__ = ("_app", "ref")

    def __init__(self, ref: str, app: TenantApp | None = None) -> None:
        self.ref = ref
        self._app = app

    def load(self) -> TenantApp:
        """The app (loaded from ``ref`` on first use where it is not live)."""
        if self._app is None:
            from tenantkit.workers import load_app

            self._app = load_app(self.ref)
        return self._app

    def __getstate__(self) -> dict[str, Any]:
        return {"ref": self.ref}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.ref = state["ref"]
        self._app = None

    def __repr__(self) -> str:
        return f"AppSource({self.ref!r})"
