"""`tenantkit storage ...` commands."""

from __future__ import annotations
