"""What this CPU computes natively: :func:`capabilities`, and where precision decisions are cached.

Example::

    capabilities().supports("bf16")     # (True, "") on Sapphire Rapids / Zen 4
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "Capabilities", "capabilities", "precision_cache_dir"]

PRECISIONS = ("auto", "fp32", "bf16", "int8")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def precision_cache_dir() -> Path:
    """Where gate decisions and int8 calibrations are kept: ``$VKIT_CACHE/precision`` or ``~/.cache/vkit/precision``."""
    root = os.environ.get("VKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vkit") / "precision"


@dataclass(frozen=True)
class Capabilities:
    """What this CPU runs natively (from its flags, decided at run time).

    Attributes:
        cpu: the CPU model name.
        flags: the relevant flags it has (bf16, VNNI, AMX).
        bf16, int8: whether each reduced precision is worth running here.
        bf16_reason, int8_reason: why not, when not.
    """

    cpu: str
    flags: tuple[str, ...]
    bf16: bool
    bf16_reason: str
    int8: bool
    int8_reason: str

    def supports(self, precision: str) -> tuple[bool, str]:
        """``(ok, reason)`` for ``precision`` (fp32 is always ok)."""
        if precision == "bf16":
            return self.bf16, self.bf16_reason
        if precision == "int8":
            return self.int8, self.int8_reason
        return True, ""

    def describe(self) -> str:
        """One line: the CPU and the flags that decide."""
        return f"{self.cpu}; flags: {' '.join(self.flags) or 'none of ' + ' '.join(_BF16_FLAGS + _INT8_FLAGS)}"


def _cpu_model(path: str | Path = "/proc/cpuinfo") -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def capabilities(flags: set[str] | None = None) -> Capabilities:
    """This CPU's native reduced precisions; ``flags`` overrides ``/proc/cpuinfo`` (tests simulate CPUs so).

    Example::

        capabilities().bf16                                  # True on Sapphire Rapids / Zen 4
        capabilities({"avx2"}).supports("bf16")[1]           # "CPU lacks avx512_bf16 / amx_bf16 ..."
    """
    from vkit.core.compression.quantize import cpu_flags, cpu_supports

    flags = cpu_flags() if flags is None else set(flags)
    bf16, bf16_reason = cpu_supports(torch.bfloat16, flags)
    vnni = flags.intersection(_INT8_FLAGS)
    if not vnni:
        int8, int8_reason = False, f"CPU lacks {' / '.join(_INT8_FLAGS)}: int8 kernels would be slower than fp32"
    else:
        from vkit.core.int8 import int8_available

        int8, int8_reason = int8_available()
    shown = tuple(f for f in _BF16_FLAGS + _INT8_FLAGS + ("amx_tile",) if f in flags)
    return Capabilities(_cpu_model(), shown, bf16, bf16_reason, int8, int8_reason)
