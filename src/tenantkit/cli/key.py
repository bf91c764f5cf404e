"""`tenantkit key ...` commands."""

from __future__ import annotations
