"""Make config snapshots and value blobs storable as JSON on every backend.

Example::

    >>> to_jsonable({"size": (2, 3), "root": Path("/data"), "lr": float("nan")})
    {'size': [2, 3], 'root': '/data', 'lr': None}
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

from vkit.core.store.engine import mask_secrets


def to_jsonable(obj: Any, *, mask: bool = False) -> Any:
    """Return ``obj`` as JSON-ready Python: containers recursed, keys as str, non-finite floats as ``None``.

    Tuples and sets become lists, paths and enums strings, classes and
    functions their dotted names, numpy/torch scalars and arrays Python
    numbers and lists (through ``.tolist()``); anything else its ``repr``.
    ``NaN``/``inf`` become ``None`` because PostgreSQL's JSON rejects them.
    An mmengine ``Config`` is converted through its ``to_dict()``. With
    ``mask``, credentials inside strings (``scheme://user:pw@``) are masked.
    """
    if isinstance(obj, str):
        return mask_secrets(obj) if mask else obj
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value, mask=mask) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value, mask=mask) for value in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(value, mask=mask) for value in obj), key=repr)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Enum):
        return to_jsonable(obj.value, mask=mask)
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    if hasattr(obj, "to_dict") and callable(obj.to_dict):  # mmengine Config / ConfigDict
        return to_jsonable(obj.to_dict(), mask=mask)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch
        return to_jsonable(obj.tolist())
    return mask_secrets(repr(obj)) if mask else repr(obj)
