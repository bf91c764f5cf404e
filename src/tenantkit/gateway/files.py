"""``/files``: the caller's own storage over HTTP.

::

    GET    /files?prefix=reports/&recursive=true   -> {"files": [...], "usage": {...}}
    GET    /files/{path}                           -> the bytes (streamed)
    PUT    /files/{path}                           -> 201 created / 200 replaced, {"file": {...}}
    DELETE /files/{path}                           -> 204

Every route works on the caller's tenant only: a path is always relative to
that tenant's root, so another tenant's files cannot be named at all. A
path breaking a rule answers 400 (the same whether or not anything exists
elsewhere), a missing file 404.

``PUT`` streams the body to storage chunk by chunk (never buffered whole),
reserving quota as it goes: a declared ``Content-Length`` larger than the
tier's whole quota answers 413 and one larger than what is left answers 429
before a byte is read; a chunked body is refused the same way as soon as it
passes the quota, and the old content stays. Downloads are attachments
with ``nosniff`` and a sandboxing ``Content-Security-Policy``; a type a
browser would run (HTML, SVG, XML, JavaScript) is sent as
``application/octet-stream``, so a stored file can never act as a page
of the API's origin. Scopes: ``files:read`` for
``GET``, ``files:write`` for ``PUT`` and ``DELETE`` (keys without scopes may
do everything).
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from tenantkit.errors import NotFound, StorageError, ValidationError
from tenantkit.gateway.deps import CurrentPrincipal, RequestContext
from tenantkit.storage import TenantStorage, normalize_path

__all__ = ["router"]

router = APIRouter(tags=["files"])

READ_CHUNK = 256 * 1024
WRITE_BUFFER = 1024 * 1024

ACTIVE_TYPES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/xhtml+xml",
        "application/xml",
        "image/svg+xml",
        "text/ecmascript",
        "text/html",
        "text/javascript",
        "text/xml",
        "text/xsl",
    }
)
"""Media types a browser may execute or render as a document: sent as bytes."""

DOWNLOAD_CSP = "default-src 'none'; sandbox"


def download_media_type(path: str) -> str:
    """The ``Content-Type`` of a download: guessed from the name, never an active type."""
    guessed = mimetypes.guess_type(path)[0]
    if guessed is None or guessed in ACTIVE_TYPES or guessed.endswith("+xml"):
        return "application/octet-stream"
    return guessed


def _storage(rc: RequestContext) -> TenantStorage:
    storage = rc.services.storage_for(rc.tenant_id, rc.tier)
    if not isinstance(storage, TenantStorage):
        raise NotFound("file storage is not enabled on this gateway")
    return storage


def _size_of(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        return None


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(READ_CHUNK):
            yield chunk


def _usage(storage: TenantStorage) -> dict[str, int]:
    used = storage.usage()
    return {
        "bytes": used.bytes,
        "files": used.files,
        "max_bytes": storage.tier.storage_bytes,
        "max_files": storage.tier.max_files,
    }


@router.get("/files", summary="List your files")
async def list_files(
    rc: CurrentPrincipal,
    prefix: str = Query("", description="Only paths starting with this, e.g. `reports/`."),
    recursive: bool = Query(True, description="Files at any depth, or one level with folders."),
) -> dict[str, Any]:
    """Your files whose path starts with ``prefix``, sorted by path."""
    rc.require_scope("files:read")
    storage = _storage(rc)
    entries = await anyio.to_thread.run_sync(lambda: storage.list(prefix, recursive=recursive))
    usage = await anyio.to_thread.run_sync(_usage, storage)
    return {"prefix": prefix, "files": [entry.public() for entry in entries], "usage": usage}


@router.get(
    "/files/{path:path}",
    summary="Download a file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_file(path: str, request: Request, rc: CurrentPrincipal) -> StreamingResponse:
    """The file's bytes, streamed."""
    rc.require_scope("files:read")
    storage = _storage(rc)
    normal = _requested(path, request)
    stream = await anyio.to_thread.run_sync(storage.open_read, normal)
    size = _size_of(stream)
    media_type = download_media_type(normal)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": DOWNLOAD_CSP,
        "Content-Disposition": (
            f"attachment; filename*=UTF-8''{quote(normal.rpartition('/')[2], safe='')}"
        ),
    }
    if size is not None:
        headers["Content-Length"] = str(size)
    return StreamingResponse(_chunks(stream), media_type=media_type, headers=headers)


def _requested(path: str, request: Request) -> str:
    """The path as the caller sent it, normalised (400 when it breaks a rule).

    Starlette's route pattern ends in ``$``, which also matches before one
    trailing newline, so ``/files/a%0A`` reaches the route as ``a``. The
    newline is put back here, so such a path is refused like any other
    control character instead of naming ``a``.
    """
    if request.scope["path"].endswith("\n") and not path.endswith("\n"):
        path += "\n"
    return normalize_path(path)


def _declared_length(request: Request) -> int | None:
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not (header.isascii() and header.isdigit()):
        raise ValidationError("Content-Length must be a whole number of bytes")
    return int(header)


@router.put(
    "/files/{path:path}",
    summary="Upload a file",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def put_file(path: str, request: Request, rc: CurrentPrincipal) -> JSONResponse:
    """Store the request body at ``path``, replacing any old content atomically."""
    rc.require_scope("files:write")
    storage = _storage(rc)
    normal = _requested(path, request)
    size = _declared_length(request)

    def open_writer() -> tuple[bool, Any]:
        existed = storage.exists(normal)
        return existed, storage.open_write(normal, size=size)

    existed, writer = await anyio.to_thread.run_sync(open_writer)
    try:
        buffer = bytearray()
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER:
                data, buffer = bytes(buffer), bytearray()
                await anyio.to_thread.run_sync(writer.write, data)
        if buffer:
            await anyio.to_thread.run_sync(writer.write, bytes(buffer))
        await anyio.to_thread.run_sync(writer.close)
    except ClientDisconnect:
        await anyio.to_thread.run_sync(writer.abort)
        raise StorageError("the upload ended before its body did; nothing was stored") from None
    except BaseException:
        await anyio.to_thread.run_sync(writer.abort)
        raise
    info = writer.info
    assert info is not None
    return JSONResponse({"file": info.public()}, status_code=200 if existed else 201)


@router.delete("/files/{path:path}", summary="Delete a file", status_code=204)
async def delete_file(path: str, request: Request, rc: CurrentPrincipal) -> Response:
    """Delete the file at ``path``."""
    rc.require_scope("files:write")
    storage = _storage(rc)
    normal = _requested(path, request)
    await anyio.to_thread.run_sync(storage.delete, normal)
    return Response(status_code=204)
