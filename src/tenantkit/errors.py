"""Every error tenantkit raises, under one root.

Each class carries the HTTP status the gateway answers with and a short
``code`` that becomes the problem type (``https://tenantkit.dev/problems/<code>``).
Messages are written for the person reading them: the gateway and the CLI
show ``str(error)`` as is, so a message never holds a secret or a driver's
internal text (driver errors are wrapped with ``raise ... from exc``).

::

    TenantKitError
    ├── ConfigurationError
    │   └── DeployError
    ├── ValidationError
    │   ├── InvalidTenantId
    │   ├── UnknownTier
    │   └── StorageError
    │       ├── InvalidPath       (one subclass per rule: tenantkit.storage.errors)
    │       ├── NotAFile, StorageUnavailable   (tenantkit.storage.errors)
    │       └── FileNotFound
    ├── AuthenticationError
    ├── PermissionDenied
    │   ├── TenantSuspended
    │   ├── TierNotAllowed
    │   └── ScopeNotAllowed
    ├── NotFound
    │   ├── TenantNotFound
    │   ├── KeyNotFound
    │   ├── FunctionNotFound
    │   └── FileNotFound
    ├── Conflict
    │   └── TenantAlreadyExists
    ├── PayloadTooLarge
    ├── LimitExceeded
    │   ├── RateLimitExceeded
    │   ├── ConcurrencyLimitExceeded
    │   └── QuotaExceeded
    │       └── StorageQuotaExceeded, FileTooLarge   (tenantkit.storage.errors)
    ├── FunctionFailed
    ├── FunctionTimeout
    ├── DatabaseError
    │   └── DatabaseUnavailable
    └── ServiceUnreachable    (the clients: no answer from the API)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ConcurrencyLimitExceeded",
    "ConfigurationError",
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "DeployError",
    "FileNotFound",
    "FunctionFailed",
    "FunctionNotFound",
    "FunctionTimeout",
    "InvalidPath",
    "InvalidTenantId",
    "KeyNotFound",
    "LimitExceeded",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimitExceeded",
    "ScopeNotAllowed",
    "ServiceUnreachable",
    "StorageError",
    "TenantAlreadyExists",
    "TenantKitError",
    "TenantNotFound",
    "TenantSuspended",
    "TierNotAllowed",
    "UnknownTier",
    "ValidationError",
]


class TenantKitError(Exception):
    """Root of every error tenantkit raises.

    Attributes:
        status: HTTP status the gateway answers with.
        code: Short slug naming the problem type.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def problem_extras(self) -> dict[str, Any]:
        """Extra members for the problem+json body (never secrets)."""
        return {}


class ConfigurationError(TenantKitError):
    """The app, the settings or a decorator's options are invalid."""

    code = "configuration-error"
    title = "Configuration error"


class DeployError(ConfigurationError):
    """A deployment to Modal cannot proceed."""

    code = "deploy-error"
    title = "Deploy error"


class ValidationError(TenantKitError):
    """Input from a caller or an operator is invalid."""

    status = 422
    code = "invalid-input"
    title = "Invalid input"


class InvalidTenantId(ValidationError):
    """A tenant id breaks the naming rule."""

    code = "invalid-tenant-id"
    title = "Invalid tenant id"


class UnknownTier(ValidationError):
    """A tier name is not in the tier table."""

    code = "unknown-tier"
    title = "Unknown tier"


class StorageError(ValidationError):
    """A storage operation was refused."""

    status = 400
    code = "storage-error"
    title = "Storage error"


class InvalidPath(StorageError):
    """A storage path is unsafe or malformed."""

    code = "invalid-path"
    title = "Invalid path"


class AuthenticationError(TenantKitError):
    """The API key is missing, malformed, forged, expired or revoked."""

    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class PermissionDenied(TenantKitError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class TenantSuspended(PermissionDenied):
    """The tenant is suspended."""

    code = "tenant-suspended"
    title = "Tenant suspended"


class TierNotAllowed(PermissionDenied):
    """The tenant's tier may not call this function."""

    code = "tier-not-allowed"
    title = "Tier not allowed"


class ScopeNotAllowed(PermissionDenied):
    """The key's scopes do not cover this call."""

    code = "scope-not-allowed"
    title = "Scope not allowed"


class NotFound(TenantKitError):
    """Something the caller named does not exist (or is not theirs)."""

    status = 404
    code = "not-found"
    title = "Not found"


class TenantNotFound(NotFound):
    code = "tenant-not-found"
    title = "Tenant not found"


class KeyNotFound(NotFound):
    code = "key-not-found"
    title = "Key not found"


class FunctionNotFound(NotFound):
    code = "function-not-found"
    title = "Function not found"


class FileNotFound(NotFound, StorageError):
    status = 404
    code = "file-not-found"
    title = "File not found"


class Conflict(TenantKitError):
    status = 409
    code = "conflict"
    title = "Conflict"


class TenantAlreadyExists(Conflict):
    code = "tenant-exists"
    title = "Tenant already exists"


class PayloadTooLarge(TenantKitError):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class LimitExceeded(TenantKitError):
    """A limit refused the call; ``retry_after`` says when to try again.

    Args:
        message: What was exceeded, for people.
        retry_after: Seconds until a retry can succeed (``None``: not by waiting).
        limit: Name of the limit, e.g. ``"requests"`` or ``"compute-seconds-per-day"``.
    """

    status = 429
    code = "rate-limited"
    title = "Too many requests"

    def __init__(
        self, message: str, *, retry_after: float | None = None, limit: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit

    def problem_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if self.limit is not None:
            extras["limit"] = self.limit
        if self.retry_after is not None:
            extras["retry_after"] = max(0, int(-(-self.retry_after // 1)))
        return extras


class RateLimitExceeded(LimitExceeded):
    """The tenant's request rate is over its tier's limit."""


class ConcurrencyLimitExceeded(LimitExceeded):
    """The tenant already has its tier's maximum of calls in flight."""

    code = "concurrency-limited"
    title = "Too many concurrent requests"


class QuotaExceeded(LimitExceeded):
    """A period or storage quota is used up."""

    code = "quota-exceeded"
    title = "Quota exceeded"


class FunctionFailed(TenantKitError):
    """A tenant function raised; the client sees only the request id."""

    code = "function-error"
    title = "Function error"


class FunctionTimeout(TenantKitError):
    status = 504
    code = "function-timeout"
    title = "Function timed out"


class DatabaseError(TenantKitError):
    """The records database refused an operation."""

    code = "database-error"
    title = "Database error"


class DatabaseUnavailable(DatabaseError):
    """The records database cannot be reached; requests fail closed."""

    status = 503
    code = "database-unavailable"
    title = "Service unavailable"


class ServiceUnreachable(TenantKitError):
    """No answer from a tenantkit API: connection refused, DNS, a timeout.

    Raised by :class:`tenantkit.Client`, :class:`tenantkit.AsyncClient` and
    the CLI's ``--url`` target in place of the httpx transport error, which is
    chained as ``__cause__``.

    Args:
        message: One line naming the URL and what went wrong.
        url: The URL that did not answer.
    """

    status = 503
    code = "service-unreachable"
    title = "Service unreachable"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.request_id: str | None = None
        self.status_code: int | None = None
