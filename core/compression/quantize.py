"""Precision stages: int8 dynamic quantization and bf16/fp16 casts (skipped where the CPU lacks support).

Example::

    chain = CompressionChain([dict(type='DynamicQuantize'), dict(type='CastBF16')])
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vkit.core.compression.base import CompressionContext, Stage, StageSkipped
from vkit.core.compression.measure import call_model
from vkit.registry.errors import ConfigError
from vkit.registry.registries import COMPRESSORS

_QUANT_DTYPES = {"qint8": torch.qint8, "float16": torch.float16}
_QUANT_MODULES = {"Linear": nn.Linear, "LSTM": nn.LSTM, "GRU": nn.GRU}


def quantize_dynamic(model: nn.Module, modules: set[type[nn.Module]], dtype: torch.dtype) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` with its deprecation warnings silenced (the one place vkit does so)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_tensor.*deprecated.*")
        from torch.ao.quantization import quantize_dynamic as _quantize_dynamic

        return _quantize_dynamic(model, modules, dtype=dtype, inplace=False)


class LinearMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` rebuilt from four ``nn.Linear`` (q, k, v, out), same call and results.

    Dynamic quantization only reaches ``nn.Linear`` modules; torch's fused
    attention keeps its q/k/v projections in one parameter, which
    ``quantize_dynamic`` leaves in fp32 (about half the weights of a ViT).
    Built with :meth:`from_mha`; returns ``(output, weights)`` like the
    original (weights averaged over heads unless ``average_attn_weights=False``;
    ``None`` with ``need_weights=False``).
    """

    def __init__(self, embed_dim: int, num_heads: int, batch_first: bool, dropout: float, bias: bool) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.batch_first, self.dropout = embed_dim, num_heads, batch_first, dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(embed_dim, embed_dim, bias=bias) for _ in range(4))

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> LinearMultiheadAttention:
        """The equivalent of ``mha`` (which must have one ``in_proj_weight`` and no ``bias_k``/``add_zero_attn``)."""
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, mha.batch_first, mha.dropout, bias)
        with torch.no_grad():
            for i, proj in enumerate((new.q_proj, new.k_proj, new.v_proj)):
                proj.weight.copy_(mha.in_proj_weight[i * mha.embed_dim:(i + 1) * mha.embed_dim])
                if bias:
                    proj.bias.copy_(mha.in_proj_bias[i * mha.embed_dim:(i + 1) * mha.embed_dim])
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
            else:
                new.out_proj.bias = None
        return new

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = True, attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, lq, _ = query.shape
        ls = key.shape[1]
        h, d = self.num_heads, self.embed_dim // self.num_heads
        q = self.q_proj(query).view(n, lq, h, d).transpose(1, 2)
        k = self.k_proj(key).view(n, ls, h, d).transpose(1, 2)
        v = self.v_proj(value).view(n, ls, h, d).transpose(1, 2)
        bias = torch.zeros(1, dtype=q.dtype, device=q.device)
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(lq, ls, dtype=torch.bool, device=q.device).triu(1)
        if attn_mask is not None:
            mask = attn_mask.view(n, h, lq, ls) if attn_mask.dim() == 3 else attn_mask
            bias = bias + (torch.zeros_like(mask, dtype=q.dtype).masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else mask)
        if key_padding_mask is not None:
            pad = key_padding_mask.view(n, 1, 1, ls)
            bias = bias + (torch.zeros_like(pad, dtype=q.dtype).masked_fill(pad, float("-inf")) if pad.dtype == torch.bool else pad)
        attn = torch.softmax(q @ k.transpose(-2, -1) / d**0.5 + bias, dim=-1)
        if self.training and self.dropout:
            attn = torch.nn.functional.dropout(attn, self.dropout)
        out = self.out_proj((attn @ v).transpose(1, 2).reshape(n, lq, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        weights = (attn.mean(1) if average_attn_weights else attn) if need_weights else None
        return out, weights


def unfuse_attention(model: nn.Module) -> int:
    """Replace every plain ``nn.MultiheadAttention`` in ``model`` by a :class:`LinearMultiheadAttention`; return how many."""
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is not nn.MultiheadAttention:
            continue
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            continue  # separate k/v widths or extra bias tokens: left fused (fp32)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, LinearMultiheadAttention.from_mha(module))
        count += 1
    return count


#: ``nn.Linear`` subclasses that only differ for empty inputs; quantize_dynamic matches exact types, so they
#: are turned into plain ``nn.Linear`` first (mmcv's wrapper is what mmaction2's FFNs use).
EQUIVALENT_LINEARS = {("mmcv.cnn.bricks.wrappers", "Linear")}


def plain_linears(model: nn.Module) -> int:
    """Replace the :data:`EQUIVALENT_LINEARS` wrappers in ``model`` by plain ``nn.Linear``; return how many."""
    count = 0
    for name, module in list(model.named_modules()):
        if (type(module).__module__, type(module).__name__) not in EQUIVALENT_LINEARS:
            continue
        plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        plain.load_state_dict(module.state_dict())
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
        count += 1
    return count


@COMPRESSORS.register_module()
class DynamicQuantize(Stage):
    """Dynamic quantization of Linear/LSTM layers: int8 weights, activations quantized on the fly.

    Backend: ``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86 kernels),
    chosen by measurement on a 768->3072->768 MLP (batch 64, 2 cores):
    torch.ao ~1.9x faster than fp32, torchao 0.18's eager
    ``Int8DynamicActivationInt8WeightConfig`` ~0.5x (slower than fp32) and
    ``Int8WeightOnlyConfig`` ~0.2x. torch.ao's deprecation warning is
    silenced in :func:`quantize_dynamic` only. With ``unfuse_attention``
    every ``nn.MultiheadAttention`` is first rebuilt from plain ``Linear``
    layers (:class:`LinearMultiheadAttention`) so its projections are
    quantized too (they hold about half a ViT's weights); mmcv's ``Linear``
    wrappers (mmaction2's FFNs) become plain ``nn.Linear`` (quantize_dynamic
    matches exact types). A model without
    any of the target layers is skipped with that reason.

    Args:
        dtype: ``'qint8'`` (int8 weights) or ``'float16'`` (fp16 weights).
        modules: layer types to quantize, among ``'Linear'``, ``'LSTM'``, ``'GRU'``.
        unfuse_attention: rebuild ``nn.MultiheadAttention`` from ``Linear`` layers first.

    Example::

        qmodel = DynamicQuantize(dtype='qint8').apply(model, ctx)
    """

    def __init__(self, dtype: str = "qint8", modules: tuple[str, ...] = ("Linear", "LSTM"), unfuse_attention: bool = True) -> None:
        super().__init__()
        if dtype not in _QUANT_DTYPES:
            raise ConfigError(f"DynamicQuantize.dtype: expected one of {sorted(_QUANT_DTYPES)}, got {dtype!r}")
        bad = [m for m in modules if m not in _QUANT_MODULES]
        if bad or not modules:
            raise ConfigError(f"DynamicQuantize.modules: expected some of {sorted(_QUANT_MODULES)}, got {list(modules)!r}")
        self.dtype = dtype
        self.modules = tuple(modules)
        self.unfuse_attention = bool(unfuse_attention)
        self.notes = ""

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        engine = torch.backends.quantized.engine
        if engine == "none" or engine not in torch.backends.quantized.supported_engines:
            raise StageSkipped(f"no quantized engine on this CPU (engine {engine!r}, supported {torch.backends.quantized.supported_engines})")
        unfused = unfuse_attention(model) if self.unfuse_attention and "Linear" in self.modules else 0
        plain = plain_linears(model) if "Linear" in self.modules else 0
        notes = [f"{unfused} attention modules unfused into Linear layers"] if unfused else []
        notes += [f"{plain} mmcv Linear wrappers made plain nn.Linear"] if plain else []
        self.notes = "; ".join(notes)
        types = {_QUANT_MODULES[m] for m in self.modules}
        if not any(isinstance(m, tuple(types)) for m in model.modules()):
            raise StageSkipped(f"{type(model).__name__} has no {'/'.join(self.modules)} layer to quantize")
        return quantize_dynamic(model.eval(), types, _QUANT_DTYPES[self.dtype])


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty when they cannot be read, e.g. not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


_NATIVE_FLAGS = {torch.bfloat16: ("avx512_bf16", "amx_bf16"), torch.float16: ("avx512_fp16", "amx_fp16")}


def cpu_supports(dtype: torch.dtype, flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether this CPU computes ``dtype`` natively, and why not: ``(ok, reason)``.

    Native support means one of the CPU flags in ``_NATIVE_FLAGS`` (without
    them torch emulates the dtype, usually slower than fp32) and a small
    matmul in ``dtype`` that runs and matches fp32.
    """
    flags = cpu_flags() if flags is None else flags
    needed = _NATIVE_FLAGS[dtype]
    if not flags.intersection(needed):
        return False, f"CPU lacks {' / '.join(needed)} (capability {torch.backends.cpu.get_cpu_capability()}): {dtype} would be emulated"
    a = torch.randn(16, 16)
    try:
        got = (a.to(dtype) @ a.to(dtype)).float()
    except RuntimeError as err:
        return False, f"a {dtype} matmul fails on this CPU: {err}"
    if not torch.allclose(got, a @ a, atol=0.5, rtol=0.05):
        return False, f"a {dtype} matmul gives wrong results on this CPU"
    return True, ""


def _cast(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _cast(v, fn) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, fn) for v in value)
    return value


class CastModel(nn.Module):
    """Runs ``module`` in ``dtype``: floating inputs are cast to it, floating outputs back to float32.

    Args:
        module: the model, already converted to ``dtype``.
        dtype: its compute dtype.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    @property
    def data_preprocessor(self) -> nn.Module:
        """The wrapped model's preprocessor (inputs are prepared as for the original)."""
        return self.module.data_preprocessor

    @property
    def output(self) -> str:
        """What the wrapped model's outputs are (``"probs"`` or a regression model's ``"value"``)."""
        return getattr(self.module, "output", "probs")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        to_dtype = lambda t: t.to(self.dtype)  # noqa: E731
        out = self.module(*_cast(args, to_dtype), **_cast(kwargs, to_dtype))
        return _cast(out, lambda t: t.float())


class _Cast(Stage):
    dtype: torch.dtype = torch.float32

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        ok, reason = cpu_supports(self.dtype)
        if not ok:
            raise StageSkipped(reason)
        cast = CastModel(model.to(self.dtype).eval(), self.dtype)
        with torch.inference_mode():
            call_model(cast, ctx.sample)  # fail here, naming the stage, rather than in evaluate
        return cast


@COMPRESSORS.register_module()
class CastBF16(_Cast):
    """Casts weights to bfloat16 (inputs cast in, outputs cast back to float32).

    Skipped, with the reason in its report, unless the CPU has
    ``avx512_bf16`` or ``amx_bf16`` and a bf16 matmul runs correctly.

    Example::

        model = CastBF16().apply(model, ctx)   # or status 'skipped' in a chain on older CPUs
    """

    dtype = torch.bfloat16


@COMPRESSORS.register_module()
class CastFP16(_Cast):
    """Casts weights to float16 (inputs cast in, outputs cast back to float32).

    Skipped, with the reason in its report, unless the CPU has
    ``avx512_fp16`` or ``amx_fp16`` and an fp16 matmul runs correctly.

    Example::

        model = CastFP16().apply(model, ctx)
    """

    dtype = torch.float16
