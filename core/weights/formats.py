"""Read a weights file into a flat ``{key: tensor}`` state dict, and say which ecosystem wrote it.

Two readers, neither of which runs anything from the file:

- ``.safetensors``: ``safetensors.torch.load`` (tensors + a JSON header);
- ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` / ``.pth.tar``: ``torch.load(weights_only=True)``
  only. A file that needs more than tensors, dicts, lists and plain values (a pickled class,
  mmengine's ``HistoryBuffer`` in a training checkpoint) is refused with the name of the class
  it wanted and a way out; a class's code never runs. mmengine's own ``load_checkpoint`` is not
  used for reading: its ``CheckpointLoader`` calls ``torch.load`` without ``weights_only``.

What is recognised (:attr:`WeightsFile.format`):

==================  =============================================================================
``safetensors``     a ``.safetensors`` file (vkit's, ``safetensors.torch.save_file``, HF)
``mmengine``        ``{'meta': ..., 'state_dict': ...}`` (mmengine / mmaction2 model zoo,
                    ``torch.save`` by mmengine's ``CheckpointHook``, ``publish_model``)
``monai-bundle``    a MONAI bundle's ``models/model.pt`` (a plain state dict) or the bundle folder
``lightning``       a Lightning ``.ckpt`` (``state_dict`` + ``pytorch-lightning_version``)
``checkpoint``      another dict holding the state dict under ``state_dict``, ``model``,
                    ``model_state_dict``, ``network``, ``net`` or ``module`` (MONAI
                    ``CheckpointSaver``, VideoMAE/DeiT-style ``{'model': ...}``)
``state_dict``      a plain state dict (torchvision ``model.state_dict()``, HF ``pytorch_model.bin``)
==================  =============================================================================

The file is read once into memory and hashed from those bytes: :attr:`WeightsFile.sha256` is the
hash of exactly what was loaded.

Example::

    weights = read_weights("x3d_s.pth")
    weights.format, weights.sha256[:12], len(weights.state)     # ('mmengine', '3f1c…', 412)
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vkit.registry.errors import CheckpointError, ConfigError

#: File endings read by ``torch.load(weights_only=True)``.
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar")
#: All endings a ``pretrained=`` file may have.
SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
#: Keys under which checkpoints keep the model's state dict, in the order they are tried.
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "network", "net", "module")
#: Endings of formats that are code, not weights: refused with a reason.
_CODE_FORMATS = {".ts": "TorchScript (a program)", ".pkl": "a bare pickle", ".pickle": "a bare pickle",
                 ".onnx": "an ONNX graph", ".jit": "TorchScript (a program)"}
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_HOWTO = ("convert it once: `python -c \"import torch, safetensors.torch as s; "
          "m = torch.load('FILE', weights_only=False); s.save_file(m.get('state_dict', m), 'W.safetensors')\"` "
          "then pass pretrained='W.safetensors'")


@dataclass
class WeightsFile:
    """A weights file as read: its tensors and where they came from.

    Attributes:
        path: the file read (for a MONAI bundle folder: its ``models/model.pt``).
        sha256: hex digest of the bytes read.
        size: bytes.
        format: see the module docstring.
        container: the key the state dict was found under (``'state_dict'``, ``'model'``) or ``None``.
        state: ``{key: tensor}`` (non-tensor entries of the state dict are dropped and counted in ``dropped``).
        meta: a small JSON-able summary of what else the file holds (mmengine ``meta`` keys, header metadata).
        dropped: keys of the state dict whose value was not a tensor.
    """

    path: Path
    sha256: str
    size: int
    format: str
    container: str | None
    state: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (no tensors): path, sha256, size, format, container, tensor count, meta."""
        return dict(path=str(self.path), sha256=self.sha256, bytes=self.size, format=self.format,
                    container=self.container, tensors=len(self.state),
                    parameters=int(sum(t.numel() for t in self.state.values())), meta=self.meta,
                    dropped=list(self.dropped))


def weights_path(value: str | Path, owner: str = "pretrained") -> Path:
    """The file a ``pretrained=`` path names (a MONAI bundle folder → its ``models/model.pt``), checked.

    Raises :class:`ConfigError` for an ending that is not a weights format (TorchScript, ONNX, a
    bare pickle are named as such) and :class:`CheckpointError` for a path that does not exist.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        for name in ("models/model.safetensors", "models/model.pt", "model.pt"):
            if (path / name).exists():  # not is_file(): a FIFO or device there is refused by name when read
                return path / name
        raise CheckpointError(f"{owner}: {str(path)!r} is a folder without models/model.pt; a MONAI bundle keeps its "
                              "weights there (give the bundle folder or the .pt/.safetensors file itself)")
    suffix = path.suffix.lower()
    if suffix in _CODE_FORMATS:
        raise ConfigError(f"{owner}: {str(value)!r} is {_CODE_FORMATS[suffix]}, which is never loaded; expected "
                          f"weights ending in {', '.join(SUFFIXES)}")
    if suffix not in SUFFIXES:
        raise ConfigError(f"{owner}: {str(value)!r} has ending {suffix or '(none)'!r}; expected weights ending in "
                          f"{', '.join(SUFFIXES)} (or a MONAI bundle folder)")
    if not path.exists():
        raise CheckpointError(f"{owner}: weights file {str(path)!r} does not exist")
    return path


def read_weights(value: str | Path, owner: str = "pretrained") -> WeightsFile:
    """Read ``value`` (a weights file or a MONAI bundle folder) safely; see the module docstring.

    Raises:
        ConfigError: the ending is not a weights format.
        CheckpointError: missing, not a regular file, unreadable, or holding something other than
            tensors and plain values (the message names the class it wanted).
    """
    from vkit.core.files import open_regular

    path = weights_path(value, owner)
    try:
        with open_regular(path) as handle:
            data = handle.read()
    except OSError as err:
        raise CheckpointError(f"{owner}: cannot read {str(path)!r}: {err}") from err
    digest = hashlib.sha256(data).hexdigest()
    if path.suffix.lower() == ".safetensors":
        state, meta = _read_safetensors(data, path, owner)
        return WeightsFile(path, digest, len(data), "safetensors", None, state, meta)
    obj = _torch_load(data, path, owner)
    fmt, container, raw, meta = _classify(obj, path, owner)
    state, dropped = _tensors(raw)
    if not state:
        raise CheckpointError(f"{owner}: {str(path)!r} ({fmt}) holds no tensors"
                              + (f" under {container!r}" if container else ""))
    return WeightsFile(path, digest, len(data), fmt, container, state, meta, dropped)


def _read_safetensors(data: bytes, path: Path, owner: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load

    try:
        state = load(data)
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{owner}: {str(path)!r} is not a readable safetensors file: {err}") from err
    meta = dict(header.get("__metadata__") or {})
    return dict(state), {k: (v if len(str(v)) <= 200 else str(v)[:200] + "…") for k, v in meta.items()}


def _torch_load(data: bytes, path: Path, owner: str) -> Any:
    """``torch.load(weights_only=True)`` of ``data``; anything it refuses becomes a :class:`CheckpointError`."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, EOFError, zip errors ...
        text = str(err)
        wanted = _UNSUPPORTED_GLOBAL.search(text)
        if wanted or "weights_only" in text.lower():
            what = f"a {wanted.group(1)} object" if wanted else "objects other than tensors and plain values"
            raise CheckpointError(
                f"{owner}: {str(path)!r} holds {what}; only tensors, dicts, lists and plain values are loaded "
                f"(torch.load(weights_only=True)), so nothing in the file runs. If you trust the file, "
                + _HOWTO.replace("FILE", str(path))) from None
        raise CheckpointError(f"{owner}: {str(path)!r} is not a readable PyTorch checkpoint: "
                              f"{type(err).__name__}: {text.splitlines()[0] if text else ''}") from None


def _is_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        sum(isinstance(v, torch.Tensor) for v in obj.values()) >= max(1, len(obj) // 2)


def _classify(obj: Any, path: Path, owner: str) -> tuple[str, str | None, Mapping[str, Any], dict[str, Any]]:
    """``(format, container key, the state dict, meta summary)`` of a loaded checkpoint object."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{owner}: {str(path)!r} holds a {type(obj).__name__}, not a state dict "
                              "({key: tensor}) or a checkpoint dict holding one")
    bundle = path.name == "model.pt" and path.parent.name == "models"
    if _is_state(obj):
        return ("monai-bundle" if bundle else "state_dict"), None, obj, {}
    for key in CONTAINER_KEYS:
        if _is_state(obj.get(key)):
            others = sorted(str(k) for k in obj if k != key)
            meta: dict[str, Any] = {"other keys": others[:20]}
            if key == "state_dict" and isinstance(obj.get("meta"), Mapping):
                fmt = "mmengine"
                meta["meta"] = {str(k): _short(v) for k, v in list(obj["meta"].items())[:20]}
            elif key == "state_dict" and "pytorch-lightning_version" in obj:
                fmt = "lightning"
            else:
                fmt = "monai-bundle" if bundle else "checkpoint"
            return fmt, key, obj[key], meta
    keys = sorted(str(k) for k in obj)[:10]
    raise CheckpointError(f"{owner}: {str(path)!r} is a dict with keys {keys} but no state dict ({{key: tensor}}) "
                          f"at the top or under any of {list(CONTAINER_KEYS)}")


def _tensors(raw: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    state = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    return state, sorted(str(k) for k, v in raw.items() if not isinstance(v, torch.Tensor))


def _short(value: Any) -> Any:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value)
    return text if len(text) <= 120 else text[:120] + "…"


__all__ = ["CONTAINER_KEYS", "SUFFIXES", "TORCH_SUFFIXES", "WeightsFile", "read_weights", "weights_path"]
