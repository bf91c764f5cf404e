"""The seed's multi-tenant SaaS, as a tenantkit app.

Run it locally (no Modal account needed)::

    pip install 'tenantkit[example]'
    tenantkit serve examples/quickstart/app.py
    tenantkit tenant create --tenant-id acme-corp --name "Acme Corporation" --tier pro \\
        --email admin@acme.com

Task types ``analyze``, ``transform`` and ``aggregate`` answer the seed's
``POST /process`` calls; ``score_text`` is cheap and meant for ``POST /batch``;
``/inference`` serves small scikit-learn models trained, at import, on
datasets that ship inside scikit-learn (nothing is downloaded at run time).
"""

from __future__ import annotations

import math
import statistics
from typing import Annotated, Any, Literal

from pydantic import Field

from tenantkit import TenantApp, TenantContext
from tenantkit.errors import ValidationError

# The deployed image installs tenantkit and these; /inference needs scikit-learn.
app = TenantApp("multi-tenant-saas", requirements=["scikit-learn>=1.5"])


@app.tenant_function(timeout=60)
def analyze(items: list[float], ctx: TenantContext) -> dict[str, Any]:
    """Summary statistics of a list of numbers (the seed's ``analyze`` task).

    Each call writes its result to the tenant's storage as
    ``results/<request id>.json`` (``GET /files/results/<request id>.json``).
    """
    if not items:
        raise ValidationError("items must hold at least one number")
    result = {
        "count": len(items),
        "sum": math.fsum(items),
        "mean": statistics.fmean(items),
        "min": min(items),
        "max": max(items),
        "stdev": statistics.pstdev(items),
        "tenant_id": ctx.tenant_id,
    }
    if ctx.storage is not None:
        ctx.storage.write_json(f"results/{ctx.request_id}.json", result)
    return result


@app.tenant_function(timeout=60)
def transform(
    items: list[float],
    operation: Literal["normalize", "scale", "square", "sort"] = "normalize",
    factor: float = 1.0,
) -> dict[str, Any]:
    """Transform a list of numbers (the seed's ``transform`` task)."""
    if operation == "normalize":
        low, high = (min(items), max(items)) if items else (0.0, 0.0)
        span = high - low
        out = [0.0 if span == 0 else (x - low) / span for x in items]
    elif operation == "scale":
        out = [x * factor for x in items]
    elif operation == "square":
        out = [x * x for x in items]
    else:
        out = sorted(items)
    return {"operation": operation, "items": out}


@app.tenant_function(timeout=60)
def aggregate(
    records: list[dict[str, Any]], group_by: str, value_field: str = "value"
) -> dict[str, Any]:
    """Group records by a field and total another (the seed's ``aggregate`` task)."""
    groups: dict[str, list[float]] = {}
    for record in records:
        key = str(record.get(group_by))
        value = record.get(value_field, 0)
        if not isinstance(value, int | float):
            raise ValidationError(f"{value_field!r} must be a number in every record")
        groups.setdefault(key, []).append(float(value))
    return {
        "group_by": group_by,
        "groups": {
            key: {"count": len(v), "sum": math.fsum(v), "mean": statistics.fmean(v)}
            for key, v in sorted(groups.items())
        },
    }


_POSITIVE = frozenset(
    ["good", "great", "excellent", "love", "happy", "fast", "nice", "wonderful", "best"]
)
_NEGATIVE = frozenset(
    ["bad", "poor", "terrible", "hate", "sad", "slow", "awful", "worst", "broken"]
)


@app.tenant_function(timeout=10)
def score_text(text: Annotated[str, Field(max_length=10_000)]) -> dict[str, Any]:
    """Word count and a lexicon sentiment score: cheap, made for ``/batch``."""
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    return {"words": len(words), "characters": len(text), "sentiment": score}


def _train() -> dict[str, Any]:
    from sklearn.datasets import load_iris, load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models: dict[str, Any] = {}
    for name, loader in (("iris", load_iris), ("wine", load_wine)):
        data = loader()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(data.data, data.target)
        models[name] = (model, [str(n) for n in data.target_names], data.data.shape[1])
    return models


MODELS = _train()


@app.tenant_function(path="/inference", timeout=60)
def inference(
    model_name: Literal["iris", "wine"],
    inputs: Annotated[list[list[float]], Field(min_length=1, max_length=1000)],
) -> dict[str, Any]:
    """Classify feature rows with a small scikit-learn model (iris: 4 features, wine: 13)."""
    model, labels, width = MODELS[model_name]
    for row in inputs:
        if len(row) != width:
            raise ValidationError(f"model {model_name!r} takes rows of {width} features")
    probabilities = model.predict_proba(inputs)
    best = probabilities.argmax(axis=1)
    return {
        "model_name": model_name,
        "predictions": [labels[i] for i in best],
        "probabilities": [round(float(p[i]), 6) for p, i in zip(probabilities, best, strict=True)],
    }
