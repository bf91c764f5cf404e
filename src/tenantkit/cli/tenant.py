"""`tenantkit tenant ...` commands."""

from __future__ import annotations
