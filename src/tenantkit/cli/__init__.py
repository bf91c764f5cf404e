"""The ``tenantkit`` command line: a thin click + rich front end.

Each command group lives in its own module (``tenant``, ``key``, ``usage``,
``db``, ``storage``, ``serve``, ``deploy``, ``secret``) and registers itself on
``main``; business logic stays in the library. Every command but ``serve``
takes ``--json``; errors print one line (exit code 1, or 2 for a usage
error), with a traceback only under ``--debug``.
"""

from __future__ import annotations

from tenantkit.cli import db, deploy, key, secret, serve, storage, tenant, usage
from tenantkit.cli._common import main

__all__ = ["main"]

del db, deploy, key, secret, serve, storage, tenant, usage
