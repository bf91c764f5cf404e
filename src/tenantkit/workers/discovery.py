"""Finding the :class:`TenantApp` in a user's file, the way ``modal deploy`` does.

``"app.py"`` means the variable named ``app`` in that file (or, failing that,
its only ``TenantApp``); ``"app.py::name"`` names the variable. A dotted module
path (``"pkg.service::app"``) works too. The file's folder goes on
``sys.path`` so its sibling modules import, and loading the same file again
returns the module already loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tenantkit.errors import ConfigurationError
from tenantkit.workers.function import TenantApp

__all__ = ["load_app", "split_ref"]


def split_ref(ref: str) -> tuple[str, str | None]:
    """``"app.py::name"`` -> ``("app.py", "name")``; ``"app.py"`` -> ``("app.py", None)``."""
    target, sep, name = ref.partition("::")
    if sep and not name:
        raise ConfigurationError(f"invalid app reference {ref!r}: name the variable after '::'")
    return target, (name or None)


def _load_file(path: Path) -> ModuleType:
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        if origin is not None and Path(origin).resolve() == path:
            return loaded
        name = f"_tenantkit_app_{abs(hash(str(path)))}"
        loaded = sys.modules.get(name)
        if loaded is not None:
            return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_app(ref: str) -> TenantApp:
    """Import the user's app named by ``ref``.

    Args:
        ref: ``"path/to/app.py"``, ``"path/to/app.py::name"`` or ``"package.module::name"``.

    Raises:
        ConfigurationError: no such file or module, or no ``TenantApp`` in it.
    """
    target, name = split_ref(ref)
    path = Path(target)
    if target.endswith(".py") or path.exists():
        path = path.resolve()
        if not path.is_file():
            raise ConfigurationError(f"no such file: {target!r}")
        module = _load_file(path)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import {target!r}: {exc}") from exc
    if name is not None:
        app = getattr(module, name, None)
        if not isinstance(app, TenantApp):
            raise ConfigurationError(f"{target!r} has no TenantApp named {name!r}")
        return app
    app = getattr(module, "app", None)
    if isinstance(app, TenantApp):
        return app
    apps = [v for v in vars(module).values() if isinstance(v, TenantApp)]
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise ConfigurationError(
            f'{target!r} defines no TenantApp: add `app = TenantApp("my-app")`'
        )
    raise ConfigurationError(
        f"{target!r} defines several TenantApps: pick one with '{target}::<variable>'"
    )
