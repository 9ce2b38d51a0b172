"""Measurements recorded for every stage: parameters, bytes on disk, sparsity, latency.

Bytes on disk are those of the state dict written as safetensors (quantized
weights as their int8 values plus scales), or of the ONNX file for a model
that has one (``onnx_path``).

Example::

    from vkit.core.compression.measure import measure
    row = measure(model, ctx)   # {'params': ..., 'bytes': ..., 'sparsity': ..., 'latency_ms': ...}
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from vkit.core.compression.base import CompressionContext, CompressionError


def call_model(model: nn.Module, sample: Any) -> Any:
    """``model(*sample)`` for a tuple/list sample, ``model(sample)`` otherwise (tensor or dict)."""
    if isinstance(sample, (tuple, list)):
        return model(*sample)
    return model(sample)


def batch_size(sample: Any) -> int:
    """Clips in ``sample``: the first dim of its first tensor."""
    if isinstance(sample, Tensor):
        return int(sample.shape[0]) if sample.dim() else 1
    values = sample.values() if isinstance(sample, dict) else sample if isinstance(sample, (tuple, list)) else []
    for value in values:
        return batch_size(value)
    raise CompressionError(f"sample: expected a tensor, tuple or dict of tensors, got {type(sample).__name__}")


def _is_weighted_layer(module: nn.Module) -> bool:
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        return True
    return callable(getattr(module, "weight", None)) and hasattr(module, "_packed_params")  # quantized Linear


def layer_weights(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """``(module name, float weight)`` of every conv/linear layer, quantized ones dequantized."""
    if hasattr(model, "weight_tensors"):
        yield from model.weight_tensors()
        return
    for name, module in model.named_modules():
        if not _is_weighted_layer(module):
            continue
        weight = module.weight() if callable(module.weight) else module.weight
        if weight is None:
            continue
        if weight.is_quantized:
            weight = weight.dequantize()
        yield name, weight.detach()


def _plain(key: str, value: Any, out: dict[str, Tensor]) -> None:
    if isinstance(value, torch.dtype) or value is None:
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _plain(f"{key}.{i}", item, out)
        return
    if not isinstance(value, Tensor):
        raise CompressionError(f"state dict entry {key!r}: cannot serialise a {type(value).__name__} to safetensors")
    value = value.detach()
    if value.is_quantized:
        out[key] = value.int_repr().contiguous().clone()
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            out[key + ".scale"] = torch.tensor([value.q_scale()], dtype=torch.float32)
            out[key + ".zero_point"] = torch.tensor([value.q_zero_point()], dtype=torch.int64)
        else:
            out[key + ".scales"] = value.q_per_channel_scales().float().clone()
            out[key + ".zero_points"] = value.q_per_channel_zero_points().clone()
        return
    out[key] = value.contiguous().clone()


def state_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The state dict as plain tensors safetensors can write (quantized ones as int values + scales)."""
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        _plain(key, value, out)
    return out


def count_params(model: nn.Module) -> int:
    """Parameters, counting the packed weights and biases of quantized layers (or the ONNX initializers)."""
    if hasattr(model, "param_count"):
        return int(model.param_count())
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            weight, bias = packed._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return int(total)


def bytes_on_disk(model: nn.Module) -> int:
    """Size of the model on disk: its ONNX file, or its state dict saved as safetensors in a temp file."""
    onnx_path = getattr(model, "onnx_path", None)
    if onnx_path is not None:
        return sum(p.stat().st_size for p in _onnx_files(onnx_path))
    with tempfile.TemporaryDirectory(prefix="vkit-size-") as tmp:
        path = os.path.join(tmp, "model.safetensors")
        save_file(state_tensors(model), path)
        return os.path.getsize(path)


def _onnx_files(onnx_path: str | Path) -> list[Path]:
    path = Path(onnx_path)
    return [path, *path.parent.glob(path.name + ".data")]  # external data, if the exporter wrote any


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all conv/linear weights (0.0 when there are none)."""
    zeros = total = 0
    for _, weight in layer_weights(model):
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


@torch.inference_mode()
def latency_ms(model: nn.Module, sample: Any, runs: int = 20, warmup: int = 3, clips: int | None = None) -> float:
    """Median wall time per clip in ms: ``runs`` timed calls on ``sample`` after ``warmup`` untimed ones.

    ``clips`` is the number of clips in ``sample`` (its first dim when ``None``).
    """
    for _ in range(warmup):
        call_model(model, sample)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call_model(model, sample)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3 / (clips or batch_size(sample))


@torch.inference_mode()
def side_by_side(reference: nn.Module, candidate: nn.Module, sample: Any, runs: int = 20, warmup: int = 3,
                 clips: int | None = None, timer: Any = time.perf_counter) -> dict[str, float]:
    """Time ``reference`` and ``candidate`` interleaved on ``sample``: how much faster the candidate is, robustly.

    After ``warmup`` untimed calls of each, ``runs`` pairs are timed back to back
    (the order alternating each pair), so both see the same machine load; the
    ``speedup`` is the median of the per-pair ratios ``reference / candidate``
    (> 1: the candidate is faster). ``timer`` returns seconds (injectable for tests).

    Returns:
        ``dict(reference_ms, candidate_ms, speedup)``: median ms per clip of each, and the median ratio.

    Example::

        side_by_side(model, model.to(torch.bfloat16), x)["speedup"]   # e.g. 1.9 on a CPU with AMX
    """
    for _ in range(warmup):
        call_model(reference, sample)
        call_model(candidate, sample)
    ref_times, cand_times, ratios = [], [], []
    for i in range(runs):
        pair = {}
        for name, model in (("ref", reference), ("cand", candidate))[:: 1 if i % 2 == 0 else -1]:
            start = timer()
            call_model(model, sample)
            pair[name] = max(timer() - start, 1e-9)
        ref_times.append(pair["ref"])
        cand_times.append(pair["cand"])
        ratios.append(pair["ref"] / pair["cand"])
    per_clip = 1e3 / (clips or batch_size(sample))
    return dict(reference_ms=statistics.median(ref_times) * per_clip, candidate_ms=statistics.median(cand_times) * per_clip,
                speedup=statistics.median(ratios))


def measure(model: nn.Module, ctx: CompressionContext, latency: bool = True) -> dict[str, Any]:
    """``params``, ``bytes``, ``sparsity`` and (unless ``latency=False``) ``latency_ms`` (per clip) of ``model`` on ``ctx.sample``."""
    was_training = model.training
    model.eval()
    try:
        row = dict(params=count_params(model), bytes=bytes_on_disk(model), sparsity=round(sparsity(model), 6))
        if latency:
            row["latency_ms"] = latency_ms(model, ctx.sample, ctx.latency_runs, ctx.warmup, ctx.batch_size)
        return row
    finally:
        model.train(was_training)
