"""Strict JSON out: what a function returns, as RFC 8259 JSON.

JSON has no NaN or Infinity. A non-finite float in a function's return value
(``float("nan")``, ``math.inf``, a NumPy ``nan``, a pydantic model field)
is written as ``null``, as JavaScript's ``JSON.stringify`` does, so every
response body parses with any JSON parser.

Example:
    >>> encode_json({"x": float("nan"), "y": [1.5, float("-inf")]})
    b'{"x":null,"y":[1.5,null]}'
"""

from __future__ import annotations

import math
from typing import Any

from pydantic_core import to_json, to_jsonable_python

__all__ = ["encode_json"]


def _fallback(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` (JSON-ready Python) with every non-finite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def encode_json(value: Any) -> bytes:
    """Serialise a function's return value (pydantic models, dataclasses, NumPy...).

    Non-finite floats become ``null``. A pydantic model configured with
    ``ser_json_inf_nan="constants"`` would still write ``NaN``; when the
    output holds such a token the value is converted to plain Python and
    written again (a slow path taken only then, or when a string in it
    contains ``NaN`` or ``Infinity``, which it leaves as it is).
    """
    out = to_json(value, fallback=_fallback, inf_nan_mode="null")
    if b"NaN" in out or b"Infinity" in out:
        plain = to_jsonable_python(value, fallback=_fallback, inf_nan_mode="null")
        out = to_json(_finite(plain), inf_nan_mode="null")
    return out
