"""Shared apps for the deploy tests (no tests here): a deployed app must live in a file."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tenantkit.workers import TenantApp, load_app

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart" / "app.py"

GPU_APP = """
from pydantic import BaseModel

from tenantkit.errors import ValidationError
from tenantkit.workers import TenantApp, TenantContext

app = TenantApp("gpu-demo", requirements=["numpy==2.1.0"], secrets=["shared-config"])


class Point(BaseModel):
    x: float
    y: float


@app.tenant_function(
    gpu="a100-80gb:2",
    timeout=600.5,
    memory=32768,
    cpu=4.0,
    retries=2,
    secrets=["hf-token"],
    path="/inference",
    tiers={"pro", "enterprise"},
)
def embed(texts: list[str], ctx: TenantContext) -> dict[str, object]:
    return {"n": len(texts), "tenant": ctx.tenant_id}


@app.tenant_function(timeout=30)
def norm(point: Point) -> Point:
    return Point(x=abs(point.x), y=abs(point.y))


@app.tenant_function(timeout=30)
def explode(n: int) -> int:
    raise RuntimeError("secret internal detail")


@app.tenant_function(timeout=30)
def reject(n: int) -> int:
    raise ValidationError("n is not acceptable")
"""


def write_app(folder: Path, source: str, name: str = "app.py") -> Path:
    """Write ``source`` to ``folder/name`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def load_gpu_app(folder: Path) -> TenantApp:
    """The GPU demo app, loaded from a fresh file in ``folder``."""
    return load_app(str(write_app(folder, GPU_APP, "gpu_app.py")))


def load_quickstart() -> TenantApp:
    """``examples/quickstart/app.py``."""
    return load_app(str(QUICKSTART))
