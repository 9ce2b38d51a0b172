"""int8 static post-training quantization of a conv backbone (PyTorch 2 export + x86 Inductor quantizer).

``torch.export`` captures the backbone, torchao's ``X86InductorQuantizer``
places int8 observers on convolutions and the ops around them, a few
validation batches calibrate them, and ``torch.compile`` (Inductor, freezing
on) lowers the result to oneDNN int8 kernels (VNNI/AMX). The observers'
statistics are cached by the checkpoint's sha256, so a later job skips
calibration (it still compiles: Inductor's own cache makes that quicker).

Chosen by measurement on X3D-S (batch 4, 13x160x160, 2 cores with AMX):
eager FX graph mode (``prepare_fx``/``convert_fx``, x86 backend) ran at 1.1
clips/s, 17x slower than fp32 (its quantized depthwise Conv3d kernels are
slow); PT2E + Inductor ran at 20.0 clips/s against 16.8 fp32 eager (1.2x),
after ~55 s of compilation. The compiled module is specialised to one batch
size; :class:`Int8Module` pads smaller batches and splits larger ones.

Example::

    module = quantize_module(backbone, calibration=[clips[:4], clips[4:8]], cache=Path("x3d.int8.safetensors"))
    features = module(batch)            # fp32 in, fp32 out
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vkit.registry.errors import ConfigError

__all__ = ["Int8Module", "int8_available", "quantize_module", "quantize_scorer", "resolve_attr"]

_OBSERVER = "activation_post_process"


def int8_available() -> tuple[bool, str]:
    """Whether this environment can build int8 modules: ``(ok, reason)`` (the CPU flags are checked by the caller)."""
    if importlib.util.find_spec("torchao") is None:
        return False, "torchao is not installed (PT2E quantization lives there since torch 2.10)"
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return False, "no C++ compiler for torch.compile's Inductor backend (int8 kernels are generated at run time)"
    return True, ""


class Int8Module(nn.Module):
    """A compiled int8 module specialised to ``batch`` inputs: smaller batches are zero-padded, larger split.

    Padding is exact in eval mode (no statistic crosses the batch).
    """

    def __init__(self, compiled: Any, batch: int) -> None:
        super().__init__()
        self.compiled, self.batch = compiled, batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for start in range(0, x.shape[0], self.batch):
            part = x[start:start + self.batch]
            n = part.shape[0]
            if n < self.batch:
                pad = part.new_zeros((self.batch - n, *part.shape[1:]))
                part = torch.cat([part, pad])
            with torch.no_grad():
                outs.append(self.compiled(part.contiguous(memory_format=_layout(part)))[:n])
        return torch.cat(outs) if len(outs) > 1 else outs[0]


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last_3d if x.dim() == 5 else torch.contiguous_format


def _pt2e() -> tuple[Any, Any, Any]:
    ok, why = int8_available()
    if not ok:
        raise ConfigError(f"int8: {why}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    return prepare_pt2e, convert_pt2e, quantizer


def quantize_module(module: nn.Module, calibration: Sequence[torch.Tensor], cache: Path | None = None) -> Int8Module:
    """``module`` (fp32, eval) quantized to int8, calibrated on ``calibration`` batches (or the observers in ``cache``).

    Args:
        module: a conv network taking one tensor.
        calibration: input batches of one size (the compiled batch size); the first is the export example.
            May be empty when ``cache`` exists (its recorded input shape is the example then).
        cache: a ``.safetensors`` file of observer statistics: read when it exists, written after calibration.

    Raises:
        ConfigError: no calibration batch and no cache, or torchao / a C++ compiler missing.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cached = cache is not None and cache.is_file()
    if not calibration and not cached:
        raise ConfigError("int8: no calibration batches (needs a few validation clips) and no cached calibration")
    prepare_pt2e, convert_pt2e, quantizer = _pt2e()
    if calibration:
        example = calibration[0].contiguous()
    else:
        with safe_open(str(cache), "pt") as handle:
            example = torch.zeros(json.loads((handle.metadata() or {})["input_shape"]))
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(module, (example,)).module()
        prepared = prepare_pt2e(exported, quantizer)
        if cached:
            prepared.load_state_dict(load_file(str(cache)), strict=False)
        else:
            for batch in calibration:
                prepared(batch.contiguous())
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                observed = {k: v.contiguous() for k, v in prepared.state_dict().items() if _OBSERVER in k}
                save_file(observed, str(cache), metadata=dict(input_shape=json.dumps(list(example.shape))))
        converted = convert_pt2e(prepared)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # constant-folds the int8 weights into oneDNN's packed layout
    compiled = torch.compile(converted)
    with torch.no_grad():
        compiled(example.contiguous(memory_format=_layout(example)))  # compile now, not in the first job batch
    return Int8Module(compiled, int(example.shape[0]))


def quantize_scorer(scorer: Any, path: str, validation: Any, cache_dir: Path, batch: int = 4) -> Int8Module:
    """The int8 twin of ``scorer.<path>``, calibrated on the inputs it receives while scoring ``validation.clips``.

    The observers are cached as ``<cache_dir>/<model_sha256>.int8.safetensors``
    (the checkpoint's sha256): a later job (or a Ray actor) needs no clips at all.
    """
    module = resolve_attr(scorer, path)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"int8: {type(scorer).__name__}.{path} is a {type(module).__name__}, expected an nn.Module")
    cache = cache_dir / f"{scorer.model_sha256}.int8.safetensors"
    calibration: list[torch.Tensor] = []
    if not cache.is_file():
        if validation is None or len(validation.clips) == 0:
            raise ConfigError(f"int8: {type(scorer).__name__} needs validation clips to calibrate {path!r}")
        clips = validation.clips
        batch = min(batch, len(clips))
        usable = (len(clips) // batch) * batch
        seen: list[torch.Tensor] = []
        hook = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
        try:
            with torch.no_grad():  # not inference_mode: export cannot trace inference tensors
                for start in range(0, usable, batch):
                    scorer.score(clips[start:start + batch])
        finally:
            hook.remove()
        calibration = [t for t in seen if t.shape[0] == batch][:8]
    return quantize_module(_unfolded(module), calibration, cache)


def resolve_attr(obj: Any, path: str) -> Any:
    """``obj.a.b`` for ``path='a.b'``; a missing attribute is a ConfigError naming it."""
    for part in path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{type(obj).__name__} has no attribute {part!r} (int8_module path {path!r})")
        obj = getattr(obj, part)
    return obj


def _unfolded(module: nn.Module) -> nn.Module:
    """A copy of ``module`` to export (the scorer keeps its own for fp32)."""
    import copy

    clone = copy.deepcopy(module)
    clone.eval()
    return clone
