"""ONNX export stage: torch.onnx.export, then an onnxruntime session checked against torch.

Example::

    ort_model = OnnxExport(opset=17).apply(model, ctx)   # an nn.Module that runs the ORT session
    ort_model(ctx.sample)
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vkit.core.compression.base import CompressionContext, CompressionError, Stage
from vkit.core.compression.measure import call_model
from vkit.registry.errors import ConfigError
from vkit.registry.registries import COMPRESSORS


class _Positional(nn.Module):
    """Lets a model that takes a ``{name: tensor}`` dict be exported with positional inputs."""

    def __init__(self, model: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, *tensors: torch.Tensor) -> Any:
        return self.model(dict(zip(self.keys, tensors)))


def _inputs(sample: Any) -> tuple[list[str], tuple[torch.Tensor, ...], str]:
    """Input names, positional tensors and the sample kind (``tensor``, ``tuple`` or ``dict``)."""
    if isinstance(sample, torch.Tensor):
        return ["input"], (sample,), "tensor"
    if isinstance(sample, dict) and all(isinstance(v, torch.Tensor) for v in sample.values()):
        return [str(k) for k in sample], tuple(sample.values()), "dict"
    if isinstance(sample, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in sample):
        return [f"input_{i}" for i in range(len(sample))], tuple(sample), "tuple"
    raise CompressionError(
        f"OnnxExport: the sample must be a tensor, a tuple of tensors or a dict of tensors, got {type(sample).__name__}"
    )


def _expm1(g: Any, x: Any) -> Any:
    """``aten::expm1`` as ``Exp(x) - 1``: ONNX has no Expm1 op (the ordinal head's log(1 - e^-gap) uses it).

    The export's ORT parity check still bounds what the rewrite costs."""
    return g.op("Sub", g.op("Exp", x), g.op("Constant", value_t=torch.tensor(1.0)))


def _register_symbolics() -> None:
    """Symbolics for the TorchScript exporter's missing ops (from opset 7 on; registering again is harmless)."""
    torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1, 7)


def _outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    raise CompressionError(f"OnnxExport: the model must return a tensor or a tuple of tensors, got {type(value).__name__}")


class OrtModule(nn.Module):
    """An ``nn.Module`` that runs an ONNX model with onnxruntime, called like the torch model it replaces.

    Args:
        onnx_path: the ``.onnx`` file.
        input_names: ONNX input names, in the order of the positional tensors.
        kind: how the model is called: ``'tensor'`` (one tensor), ``'tuple'``
            (positional tensors) or ``'dict'`` (one ``{input name: tensor}`` dict).
        threads: intra-op threads of the session (default: ``torch.get_num_threads()``).

    Attributes:
        onnx_path: measured for bytes on disk.
        output: what its outputs are, as the torch model's (``"probs"``, or ``"value"`` for a regression model).
    """

    def __init__(self, onnx_path: str | Path, input_names: list[str], kind: str = "tensor", threads: int | None = None) -> None:
        super().__init__()
        from vkit.core.extras import require_extra

        require_extra("onnx", ("onnxruntime",), purpose=f"running the ONNX model {onnx_path}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.onnx_path = Path(onnx_path)
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = list(input_names)
        self.kind = kind

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if kwargs:
            raise CompressionError(f"OrtModule({self.onnx_path.name}): called with keyword arguments {sorted(kwargs)}; "
                                   f"the exported graph takes only its inputs {self.input_names} ({self.kind}), so a "
                                   "caller that passes options or other inputs cannot run the ONNX model")
        if self.kind == "dict":
            if len(args) != 1 or not isinstance(args[0], dict):
                raise CompressionError(f"OrtModule({self.onnx_path.name}): expected one dict of {self.input_names}")
            tensors = [args[0][k] for k in self.input_names]
        else:
            tensors = list(args)
        if len(tensors) != len(self.input_names):
            raise CompressionError(f"OrtModule({self.onnx_path.name}): expected {len(self.input_names)} inputs, got {len(tensors)}")
        feed = {name: np.ascontiguousarray(t.detach().cpu().float().numpy()) for name, t in zip(self.input_names, tensors)}
        try:
            outs = [torch.from_numpy(np.asarray(o)) for o in self.session.run(None, feed)]
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            expected = {i.name: i.shape for i in self.session.get_inputs()}
            given = {name: list(array.shape) for name, array in feed.items()}
            raise CompressionError(f"OrtModule({self.onnx_path}): onnxruntime cannot run inputs of shapes {given}; the "
                                   f"exported graph expects {expected} (only the batch dim varies): {err}") from err
        return outs[0] if len(outs) == 1 else tuple(outs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            source = self.__dict__.get("onnx_path")
            raise AttributeError(f"OrtModule({source.name if source else '?'}) has no attribute {name!r}: an exported "
                                 "ONNX model runs its graph only; its layers cannot be reached or replaced") from None

    def _initializers(self) -> Iterator[tuple[str, np.ndarray]]:
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(self.onnx_path)).graph
        for init in graph.initializer:
            yield init.name, numpy_helper.to_array(init)

    def param_count(self) -> int:
        """Elements in the ONNX initializers (the weights)."""
        return int(sum(a.size for _, a in self._initializers()))

    def weight_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The floating initializers with 2+ dims (conv/linear weights), for sparsity."""
        for name, array in self._initializers():
            if array.ndim >= 2 and np.issubdtype(array.dtype, np.floating):
                yield name, torch.from_numpy(array.copy())

    def __deepcopy__(self, memo: dict) -> OrtModule:
        return self  # immutable: the session is never changed after export


@COMPRESSORS.register_module()
class OnnxExport(Stage):
    """Exports to ONNX (TorchScript exporter, dynamic batch dim) and checks onnxruntime against torch.

    The outputs of the ORT session on ``ctx.sample`` must match torch within
    ``atol``; otherwise a :class:`CompressionError` gives the max abs diff.
    The returned model is an :class:`OrtModule`, so the chain measures and
    evaluates the ONNX model itself. Put it last: later stages cannot change it.

    Args:
        opset: ONNX opset version.
        atol: tolerance of the export check.
        filename: file name under ``ctx.work_dir``.

    Example::

        chain = CompressionChain([dict(type='MagnitudePrune', amount=0.3), dict(type='OnnxExport', opset=17)])
    """

    extras = ("onnx",)  # checked before a run starts (vkit.core.extras.check_config_extras)

    def __init__(self, opset: int = 17, atol: float = 1e-4, filename: str = "model.onnx") -> None:
        super().__init__()
        if not isinstance(opset, int) or not 7 <= opset <= 23:
            raise ConfigError(f"OnnxExport.opset: expected an int in [7, 23], got {opset!r}")
        if not isinstance(atol, (int, float)) or atol <= 0:
            raise ConfigError(f"OnnxExport.atol: expected a positive float, got {atol!r}")
        self.opset = opset
        self.atol = float(atol)
        self.filename = filename

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        if any(p.is_quantized for p in model.state_dict().values() if isinstance(p, torch.Tensor)) or any(
            hasattr(m, "_packed_params") for m in model.modules()
        ):
            raise CompressionError(f"OnnxExport: {type(model).__name__} holds torch quantized layers, which ONNX export does not support; export before DynamicQuantize")
        if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.state_dict().values() if isinstance(p, torch.Tensor)):
            raise CompressionError(f"OnnxExport: {type(model).__name__} has non-float32 weights (a CastBF16/CastFP16 stage?); export before casting")
        names, tensors, kind = _inputs(ctx.sample)
        model = model.eval()
        with torch.inference_mode():
            expected = _outputs(call_model(model, ctx.sample))
        exportable = _Positional(model, names) if kind == "dict" else model
        path = ctx.dir() / self.filename
        out_names = [f"output_{i}" for i in range(len(expected))] if len(expected) > 1 else ["output"]
        axes = {n: {0: "batch"} for n in [*names, *out_names]}
        _register_symbolics()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                torch.onnx.export(
                    exportable, tensors, str(path), dynamo=False, opset_version=self.opset,
                    input_names=names, output_names=out_names, dynamic_axes=axes,
                )
        except Exception as err:  # noqa: BLE001 - exporter errors come in many types
            raise CompressionError(f"OnnxExport: torch.onnx.export of {type(model).__name__} (opset {self.opset}) failed: {err}") from err
        try:
            ort_model = OrtModule(path, names, kind)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CompressionError(f"OnnxExport: onnxruntime cannot load {path} exported from {type(model).__name__}: {err}") from err
        got = _outputs(call_model(ort_model, ctx.sample))
        shapes = [(tuple(g.shape), tuple(e.shape)) for g, e in zip(got, expected)]
        if len(got) != len(expected) or any(a != b for a, b in shapes):
            raise CompressionError(f"OnnxExport: onnxruntime outputs of {path} have shapes {shapes} (ort, torch)")
        diff = max(float((g - e.float()).abs().max()) for g, e in zip(got, expected))
        if not diff <= self.atol:
            raise CompressionError(
                f"OnnxExport: onnxruntime output of {path} differs from torch by max abs {diff:.3g} > atol {self.atol:g}"
            )
        self.max_abs_diff = diff
        if isinstance(getattr(model, "data_preprocessor", None), nn.Module):
            ort_model.data_preprocessor = model.data_preprocessor  # inputs prepared as for the torch model
        ort_model.output = getattr(model, "output", "probs")  # a regression model's values stay values
        return ort_model
