"""vkit plugin: the education vertical (declared through the vkit.plugins entry point like any third-party plugin)."""
from __future__ import annotations
