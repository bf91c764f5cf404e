"""`tenantkit usage ...` commands."""

from __future__ import annotations
