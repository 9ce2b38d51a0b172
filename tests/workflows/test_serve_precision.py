"""`vkit serve --precision`: bf16 only where the CPU has it natively; `auto` on such a CPU is refused with the way out
(serve starts with no inputs to gate bf16 on, and a checkpoint stores none), never a silent guess."""
from __future__ import annotations

import pytest

from vkit.core import precision
from vkit.registry.errors import ConfigError
from vkit.workflows.serve.models import choose_precision

BF16_CPU = precision.Capabilities("test CPU", ("avx512_bf16",), True, "", False, "no vnni (simulated)")
OLD_CPU = precision.Capabilities("old CPU", (), False, "CPU lacks avx512_bf16 / amx_bf16 (simulated)", False, "no vnni")


def test_serve_precision_follows_the_cpu_and_auto_on_native_bf16_asks_for_a_measured_choice(monkeypatch) -> None:
    assert choose_precision("fp32") == ("fp32", "as requested")
    monkeypatch.setattr(precision, "capabilities", lambda: OLD_CPU)
    for requested in ("bf16", "auto"):
        assert choose_precision(requested) == ("fp32", "CPU lacks avx512_bf16 / amx_bf16 (simulated); running fp32")
    monkeypatch.setattr(precision, "capabilities", lambda: BF16_CPU)
    assert choose_precision("bf16") == ("bf16", f"native bf16 on {BF16_CPU.describe()}")
    with pytest.raises(ConfigError, match=r"no validation inputs to gate bf16 on; run `vkit predict --precision auto`"):
        choose_precision("auto")
    with pytest.raises(ConfigError, match="vkit serve takes one of"):
        choose_precision("int8")
