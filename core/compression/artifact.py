"""Compressed models on disk: one artifact per applied stage, loadable without the run's config.

Each stage that passes the gate is written into the chain's work dir as
``NN-Stage.safetensors`` + ``NN-Stage.json`` (an ONNX stage: its ``.onnx`` file
+ ``NN-Stage.json``); ``index.json`` lists them and names the chain's final
model. The JSON sidecar (``format: vkit-compressed/1``) carries everything a
loader needs: the MODELS config the model was built from (``architecture``),
the shape attributes of every layer a pruning stage changed (``shapes``), the
precision (``float32``, ``bfloat16``, ``float16``, ``qint8``), the file's
sha256, the measured row (size, latency, metric) and a parity check (the
output on a seeded input).

Example::

    from vkit.core.compression import load_compressed

    model = load_compressed("runs/7/compression")                   # the chain's final model
    model = load_compressed("runs/7/compression", stage="ChannelPrune")
    model = load_compressed("runs/7/compression/01-ChannelPrune.json")
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vkit.core.compression.base import CompressionError
from vkit.core.compression.measure import call_model, state_tensors
from vkit.registry.errors import CheckpointError

FORMAT = "vkit-compressed/1"
INDEX = "index.json"
#: The constructor attributes a structured-pruning stage may change, per layer type.
SHAPE_ATTRS: tuple[tuple[type[nn.Module], tuple[str, ...]], ...] = (
    (nn.modules.conv._ConvNd, ("in_channels", "out_channels", "groups")),
    (nn.Linear, ("in_features", "out_features")),
    (nn.modules.batchnorm._NormBase, ("num_features",)),
    (nn.GroupNorm, ("num_groups", "num_channels")),
    (nn.LayerNorm, ("normalized_shape",)),
    (nn.PReLU, ("num_parameters",)),
)
_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CHECK_SEED = 0


def shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {attr: value}}`` of every layer listed in :data:`SHAPE_ATTRS`."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if hasattr(module, "_packed_params") and hasattr(module, "in_features"):  # a dynamically quantized Linear
            out[name] = dict(in_features=module.in_features, out_features=module.out_features)
            continue
        for kind, attrs in SHAPE_ATTRS:
            if isinstance(module, kind):
                out[name] = {a: list(v) if isinstance(v, tuple) else v for a in attrs if (v := getattr(module, a, None)) is not None}
                break
    return out


def _split(model: nn.Module) -> tuple[nn.Module, str, str]:
    """``(plain model, precision, wrapper)``: unwraps a :class:`CastModel`; names a dynamic-int8 model's precision."""
    from vkit.core.compression.quantize import CastModel

    if isinstance(model, CastModel):
        return model.module, str(model.dtype).removeprefix("torch."), "cast"
    if any(hasattr(m, "_packed_params") for m in model.modules()):
        return model, "qint8", ""
    dtypes = {p.dtype for p in model.state_dict().values() if isinstance(p, torch.Tensor) and p.is_floating_point()}
    return model, str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32", ""


def _seeded_like(sample: Any) -> Any:
    """A seeded standard-normal input with ``sample``'s structure, shapes and dtypes (no data is stored)."""
    gen = torch.Generator().manual_seed(_CHECK_SEED)

    def make(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return torch.randn(value.shape, generator=gen).to(value.dtype) if value.is_floating_point() else value.clone()
        if isinstance(value, dict):
            return {k: make(v) for k, v in value.items()}
        return [make(v) for v in value]

    return make(sample)


def _spec(sample: Any) -> Any:
    """JSON form of a sample's structure: ``{"shape": [...], "dtype": "float32"}`` leaves."""
    if isinstance(sample, torch.Tensor):
        return dict(shape=list(sample.shape), dtype=str(sample.dtype).removeprefix("torch."))
    if isinstance(sample, dict):
        return {"dict": {str(k): _spec(v) for k, v in sample.items()}}
    if isinstance(sample, (tuple, list)):
        return {"list": [_spec(v) for v in sample]}
    raise CompressionError(f"compressed artifact: cannot describe a sample of type {type(sample).__name__}")


def _from_spec(spec: Any) -> Any:
    if "dict" in spec:
        return {k: _from_spec(v) for k, v in spec["dict"].items()}
    if "list" in spec:
        return tuple(_from_spec(v) for v in spec["list"])
    return torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"]))


def _first_output(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise CompressionError(f"compressed artifact: the model returned {type(value).__name__}, expected a tensor")


@torch.inference_mode()
def _check_values(model: nn.Module, sample: Any) -> list[float]:
    out = _first_output(call_model(model.eval(), _seeded_like(sample))).float().flatten()[:64]
    return [float(v) for v in out]


def save_stage(
    model: nn.Module, folder: Path, *, index: int, stage: str, sample: Any, model_config: dict | None,
    row: dict[str, Any], notes: str = "",
) -> Path | None:
    """Write one stage's model as an artifact in ``folder``; return its JSON sidecar (``None``: not saveable).

    A torch model needs ``model_config`` (the MODELS config it was built from);
    without it only ONNX stages are saved. The row's measured values
    (``bytes``, ``latency_ms``, ``metric_after`` ...) go into the sidecar.
    """
    from vkit.core.checkpoint import save_checkpoint
    from vkit.core.compression.onnx_export import OrtModule
    from vkit.core.store.jsonable import to_jsonable
    from vkit.core.store.provenance import sha256_file

    stem = f"{index:02d}-{stage}"
    measured = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    meta: dict[str, Any] = dict(vkit_compressed=FORMAT, stage=stage, index=index, measured=measured, notes=notes,
                                architecture=to_jsonable(copy.deepcopy(dict(model_config))) if model_config else None,
                                check=dict(seed=_CHECK_SEED, sample=_spec(sample), output=_check_values(model, sample)))
    if isinstance(model, OrtModule):
        target = folder / f"{stem}.onnx"
        if model.onnx_path.resolve() != target.resolve():
            shutil.copyfile(model.onnx_path, target)
        digest, size = sha256_file(target)
        meta.update(kind="onnx", precision="float32", weights=target.name, sha256=digest, bytes=size,
                    input_names=model.input_names, call=model.kind)
        sidecar = target.with_suffix(".json")
        sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
        return sidecar
    if not model_config:
        return None
    plain, precision, wrapper = _split(model)
    meta.update(kind="safetensors", precision=precision, wrapper=wrapper, shapes=shapes(plain),
                quantized=_quantized_layers(plain))
    path = save_checkpoint(state_tensors(plain), folder / f"{stem}.safetensors", meta=meta)
    return path.with_suffix(".json")


def _quantized_layers(model: nn.Module) -> dict[str, list[str]] | None:
    """``{"Linear": [names], ...}`` of dynamically quantized layers (``None`` when there are none)."""
    found: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if hasattr(module, "_packed_params"):
            found.setdefault(type(module).__name__, []).append(name)
    return found or None


def write_index(folder: Path, entries: list[dict[str, Any]], final: str | None) -> Path:
    """``index.json``: every stage (name, status, artifact file) and the final model's sidecar (``None``: the original)."""
    path = folder / INDEX
    path.write_text(json.dumps(dict(format=FORMAT, final=final, stages=entries), indent=2) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------- loading
def resolve(path: str | Path, stage: str | None = None) -> Path:
    """The JSON sidecar of a compressed artifact: from a chain folder (its final model, or ``stage``), a sidecar or a weights file."""
    path = Path(path)
    if path.is_dir():
        index = path / INDEX
        if not index.is_file():
            raise CheckpointError(f"{path}: no {INDEX} (not a compression folder written by CompressionChain)")
        data = json.loads(index.read_text(encoding="utf-8"))
        if stage is None:
            if not data.get("final"):
                raise CheckpointError(f"{index}: names no final compressed model: the chain applied no stage (use the "
                                      "uncompressed checkpoint), or its final model could not be saved (no model_config)")
            return path / data["final"]
        ok = [e for e in data.get("stages", []) if e.get("stage") == stage and e.get("artifact")]
        if not ok:
            names = sorted({e["stage"] for e in data.get("stages", []) if e.get("artifact")})
            raise CheckpointError(f"{index}: no saved stage {stage!r}; saved stages: {names or 'none'}")
        return path / ok[-1]["artifact"]
    if stage is not None:
        raise CheckpointError(f"{path}: stage={stage!r} needs the chain's folder, not one artifact")
    sidecar = path if path.suffix == ".json" else path.with_suffix(".json")
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: no compressed artifact here (expected {sidecar.name} beside it)")
    return sidecar


def compressed_meta(path: str | Path, stage: str | None = None) -> dict[str, Any]:
    """The JSON sidecar of a compressed artifact (as :func:`load_compressed` resolves it), plus its ``sidecar`` path.

    What a scorer needs without loading the model: ``sha256`` (the compressed
    model's identity, e.g. for resume), ``stage``, ``precision``, ``kind``
    (``safetensors`` or ``onnx``) and the ``measured`` row.

    Example::

        compressed_meta("runs/7/compression")["sha256"]
    """
    from vkit.core.checkpoint import load_meta

    sidecar = resolve(path, stage)
    meta = load_meta(sidecar)
    if meta.get("vkit_compressed") != FORMAT:
        raise CheckpointError(f"{sidecar}: not a compressed-model artifact (expected vkit_compressed={FORMAT!r})")
    return dict(meta, sidecar=str(sidecar))


def load_compressed(path: str | Path, stage: str | None = None, *, verify: bool = True, check: bool = True) -> nn.Module:
    """Load a compressed model saved by :class:`CompressionChain`, in eval mode, without the run's config.

    Args:
        path: the chain's folder (``<work_dir>/compression``; its final model, or
            ``stage``), an artifact's JSON sidecar, or its ``.safetensors``/``.onnx`` file.
        stage: a stage name (the last saved stage of that name) when ``path`` is a folder.
        verify: check the file's sha256 against the sidecar.
        check: run the model on the seeded input and compare with the recorded output.

    Returns:
        The model: the rebuilt torch model (pruned shapes, precision), or an
        :class:`OrtModule` for an ONNX artifact (with ``data_preprocessor`` when
        the architecture is known).

    Example::

        model = load_compressed("runs/7/compression")
        probs = model({"volume": x}).softmax(-1)
    """
    meta = compressed_meta(path, stage)
    sidecar = Path(meta["sidecar"])
    weights = sidecar.parent / meta["weights"]
    model = _load_onnx(weights, meta, verify) if meta["kind"] == "onnx" else _load_torch(weights, meta, verify)
    if check:
        _parity(model, meta, sidecar)
    return model.eval()


def _build(meta: dict[str, Any], source: Path) -> nn.Module:
    from vkit.registry.registries import MODELS

    if not meta.get("architecture"):
        raise CheckpointError(f"{source}: the artifact records no architecture (model config) to rebuild the model from")
    return MODELS.build(copy.deepcopy(meta["architecture"]))


def _load_onnx(path: Path, meta: dict[str, Any], verify: bool) -> nn.Module:
    from vkit.core.compression.onnx_export import OrtModule
    from vkit.core.store.provenance import sha256_file

    if not path.is_file():
        raise CheckpointError(f"{path}: the ONNX file of this artifact does not exist")
    if verify and sha256_file(path)[0] != meta["sha256"]:
        raise CheckpointError(f"{path}: sha256 does not match the one recorded in its sidecar; the file was changed or corrupted")
    model = OrtModule(path, meta["input_names"], meta["call"])
    if meta.get("architecture"):
        built = _build(meta, path)
        preprocessor = getattr(built, "data_preprocessor", None)
        if preprocessor is not None:
            model.data_preprocessor = preprocessor
        model.output = getattr(built, "output", "probs")  # a regression model's values stay values
    return model


def _reshape(model: nn.Module, layer_shapes: dict[str, dict[str, Any]], state: dict[str, torch.Tensor], source: Path) -> None:
    """Give ``model`` the recorded layer attributes and the saved tensors' shapes (the pruned architecture)."""
    modules = dict(model.named_modules())
    for name, attrs in layer_shapes.items():
        if name not in modules:
            raise CheckpointError(f"{source}: the rebuilt model has no layer {name!r}; the architecture does not match")
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    for key, tensor in model.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        packed = f"{owner}._packed_params._packed_params.{0 if leaf == 'weight' else 1}"  # a quantized Linear's
        saved = state.get(key, state.get(packed) if leaf in ("weight", "bias") else None)
        if saved is None or not isinstance(tensor, torch.Tensor) or saved.shape == tensor.shape:
            continue
        module = modules[owner]
        if leaf in module._parameters:
            module._parameters[leaf] = nn.Parameter(torch.empty(saved.shape, dtype=tensor.dtype), module._parameters[leaf].requires_grad)
        elif leaf in module._buffers:
            module._buffers[leaf] = torch.empty(saved.shape, dtype=tensor.dtype)


def _load_torch(path: Path, meta: dict[str, Any], verify: bool) -> nn.Module:
    from vkit.core.checkpoint import load_checkpoint
    from vkit.core.compression.quantize import CastModel

    state, _ = load_checkpoint(path, verify=verify)
    model = _build(meta, path).eval()
    _reshape(model, meta.get("shapes") or {}, state, path)
    precision = meta.get("precision", "float32")
    if meta.get("quantized"):
        from vkit.core.compression.quantize import _QUANT_MODULES, quantize_dynamic

        types = {_QUANT_MODULES[t] for t in meta["quantized"] if t in _QUANT_MODULES}
        model = quantize_dynamic(model, types, torch.qint8)
        state = _packed(model, state, path)
    elif precision in _PRECISIONS:
        model = model.to(_PRECISIONS[precision])
    else:
        raise CheckpointError(f"{path}: unknown precision {precision!r}; expected one of {[*_PRECISIONS, 'qint8']}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip()) or str(err)
        raise CheckpointError(f"{path} does not fit the rebuilt {type(model).__name__}: {detail}") from err
    if meta.get("wrapper") == "cast":
        model = CastModel(model, _PRECISIONS[precision])
    return model


def _packed(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """The saved flat tensors (int8 values + scales) turned back into a quantized model's state dict."""
    from collections import OrderedDict

    own = model.state_dict()
    out: dict[str, Any] = OrderedDict()
    out._metadata = getattr(own, "_metadata", None)  # type: ignore[attr-defined]  # per-module versions (packed params)
    for key, value in own.items():
        if isinstance(value, torch.dtype):
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = tuple(_quantized(state, f"{key}.{i}", source) for i in range(len(value)))
        else:
            out[key] = state[key] if key in state else _missing(key, source)
    return out


def _quantized(state: dict[str, torch.Tensor], key: str, source: Path) -> torch.Tensor | None:
    if key + ".scale" in state:
        return torch._make_per_tensor_quantized_tensor(state[key], float(state[key + ".scale"][0]), int(state[key + ".zero_point"][0]))
    if key + ".scales" in state:
        return torch._make_per_channel_quantized_tensor(state[key], state[key + ".scales"], state[key + ".zero_points"], 0)
    return state.get(key)


def _missing(key: str, source: Path) -> torch.Tensor:
    raise CheckpointError(f"{source}: tensor {key!r} of the rebuilt model is missing from the file")


def _parity(model: nn.Module, meta: dict[str, Any], source: Path) -> None:
    check = meta.get("check") or {}
    if not check.get("output"):
        return
    got = torch.tensor(_check_values(model, _from_spec(check["sample"])))
    want = torch.tensor(check["output"])
    tol = 1e-4 + (1e-3 if meta.get("precision") == "float32" else 2e-2) * float(want.abs().max())
    diff = float((got - want).abs().max()) if got.shape == want.shape else math.inf
    if not diff <= tol:
        raise CheckpointError(f"{source}: the loaded model's output on the seeded check input differs from the recorded "
                              f"one by {diff:.3g} (> {tol:.3g}); the artifact does not rebuild the compressed model")
