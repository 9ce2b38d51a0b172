"""The ``Backbone`` extension point: one interface over video and volume feature extractors.

Every backbone takes a clip ``(N, C, T, H, W)`` (a 3-D scan is ``(N, C, D, H, W)``
with depth as ``T``) and returns pooled features ``(N, feature_dim)``, or a
temporal sequence ``(N, T', feature_dim)`` with ``temporal=True`` (or
``output='temporal'`` at construction).

Adding a backbone (e.g. from a plugin's ``vkit_register_components`` hook)::

    import torch
    from vkit.core.backbones import Backbone
    from vkit.registry.registries import BACKBONES

    @BACKBONES.register_module(name="MyC3D")
    class MyC3D(Backbone):
        prefers_channels_last_3d = True   # conv net: faster in channels_last_3d on CPU

        def __init__(self, width: int = 16, num_frames: int = 8, output: str = "pooled",
                     pretrained: str | None = None) -> None:
            super().__init__(output=output, pretrained=pretrained)
            self.feature_dim, self.num_frames, self.input_size = width, num_frames, (112, 112)
            self.conv = torch.nn.Conv3d(3, width, 3, padding=1)
            self.load_pretrained(pretrained)

        def forward_temporal(self, x):            # (N, C, T, H, W) -> (N, T, D)
            return self.conv(x).mean((3, 4)).transpose(1, 2)

        @classmethod
        def smoke_config(cls):                    # tiny overrides for the registry-driven tests
            return dict(width=4, num_frames=4)

    net = BACKBONES.build(dict(type="MyC3D"))
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vkit.registry.errors import CheckpointError, ConfigError, DataError

#: ImageNet statistics in the 0..255 pixel scale (what mmaction2's configs use).
IMAGENET_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)

_OUTPUTS = ("pooled", "temporal")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_SAFETENSORS_HOWTO = (
    "no weights can be downloaded here: download the file elsewhere, convert it with "
    "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors') and pass "
    "pretrained='/path/to/weights.safetensors'"
)


def is_url(value: Any) -> bool:
    """True when ``value`` is a string with a scheme (``https://``, ``s3://``, ``torchvision://`` ...)."""
    return isinstance(value, str) and bool(_URL.match(value))


def reject_urls(cfg: Any, owner: str, key: str = "") -> None:
    """Raise :class:`ConfigError` if any value nested in ``cfg`` is a URL (a download in disguise).

    Args:
        cfg: a config value (dict, list, tuple or scalar) about to reach an upstream builder.
        owner: the backbone's registered name, for the message.
        key: the dotted key of ``cfg`` so far, for the message.
    """
    if isinstance(cfg, Mapping):
        for k, v in cfg.items():
            reject_urls(v, owner, f"{key}.{k}" if key else str(k))
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            reject_urls(v, owner, f"{key}[{i}]")
    elif is_url(cfg):
        raise ConfigError(f"backbone {owner!r}: {key or 'pretrained'}={cfg!r} is a URL; {_SAFETENSORS_HOWTO}")


def check_pretrained(pretrained: str | Path | None, owner: str) -> Path | None:
    """Validate a ``pretrained=`` value: ``None`` or an existing local ``.safetensors`` file.

    Args:
        pretrained: the value given to the backbone.
        owner: the backbone's registered name, for the message.

    Returns:
        The path, or ``None``.
    """
    if pretrained is None:
        return None
    if not isinstance(pretrained, (str, Path)):
        raise ConfigError(f"backbone {owner!r}: pretrained must be None or a path to a .safetensors file, "
                          f"got {type(pretrained).__name__} {pretrained!r}")
    if is_url(str(pretrained)):
        raise ConfigError(f"backbone {owner!r}: pretrained={str(pretrained)!r} is a URL; {_SAFETENSORS_HOWTO}")
    path = Path(pretrained).expanduser()
    if path.suffix != ".safetensors":
        raise ConfigError(f"backbone {owner!r}: pretrained={str(pretrained)!r} is not a .safetensors file "
                          "(pickled checkpoints are never loaded); " + _SAFETENSORS_HOWTO)
    if not path.is_file():
        raise CheckpointError(f"backbone {owner!r}: pretrained file {str(path)!r} does not exist")
    return path


@contextlib.contextmanager
def capture_output(module: nn.Module) -> Iterator[list[Any]]:
    """Collect ``module``'s forward outputs while the block runs (a forward hook, removed on exit).

    Lets a wrapper read an upstream network's intermediate features without
    re-implementing its ``forward``.

    Example::

        with capture_output(net.layer4) as seen:
            pooled = net(x)
        feature_map = seen[-1]
    """
    seen: list[Any] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        yield seen
    finally:
        handle.remove()


class Backbone(nn.Module):
    """Base class of every vkit backbone: ``(N, C, T, H, W)`` in, ``(N, D)`` or ``(N, T', D)`` out.

    Subclasses implement :meth:`forward_temporal` (and :meth:`forward_pooled`
    when the pooled feature is not the mean of the sequence, e.g. a class
    token) and set the instance attributes below in ``__init__``.

    Attributes:
        feature_dim: ``D``, the size of one feature vector.
        input_size: ``(H, W)`` the backbone expects (its standard setting).
        num_frames: ``T`` the backbone expects (depth for volumes).
        in_channels: ``C``.
        mean, std: per-channel normalisation the weights expect, in the
            0..255 pixel scale for video (as mmaction2's
            ``ActionDataPreprocessor``); in the scan's own (already
            normalised) intensity scale for volumes, i.e. ``0`` and ``1``.
            :meth:`normalize` applies them.
        modality: ``"video"`` or ``"volume"`` (class attribute).
        prefers_channels_last_3d: conv nets run faster on CPU with weights and
            input in ``torch.channels_last_3d`` (class attribute; used by
            :func:`vkit.core.backbones.prepare_for_inference`).
        fixed_num_frames / fixed_input_size: the input must have exactly
            ``num_frames`` frames / ``input_size`` pixels (position
            embeddings, temporal shift); checked in :meth:`forward`.

    Args:
        output: ``'pooled'`` (default) or ``'temporal'``: what ``forward(x)`` returns.
        pretrained: ``None`` or a local ``.safetensors`` file, loaded by
            :meth:`load_pretrained` at the end of the subclass ``__init__``; a
            URL raises :class:`ConfigError` (nothing can be downloaded).
    """

    modality: ClassVar[str] = "video"
    prefers_channels_last_3d: ClassVar[bool] = False
    fixed_num_frames: ClassVar[bool] = False
    fixed_input_size: ClassVar[bool] = False

    feature_dim: int
    input_size: tuple[int, int]
    num_frames: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, output: str = "pooled", pretrained: str | Path | None = None) -> None:
        super().__init__()
        if output not in _OUTPUTS:
            raise ConfigError(f"backbone {self.registry_name()!r}: output={output!r}; expected one of {_OUTPUTS}")
        check_pretrained(pretrained, self.registry_name())
        self.output = output
        self.in_channels = 3
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.memory_format: torch.memory_format = torch.contiguous_format

    # --- what subclasses implement -------------------------------------------------
    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Features per time step ``(N, T', D)`` of a checked input ``(N, C, T, H, W)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_temporal(x)")

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, D)``; by default the mean of :meth:`forward_temporal` over time."""
        return self.forward_temporal(x).mean(1)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """Small constructor overrides for the registry-driven smoke tests (tiny widths, T, H, W)."""
        return {}

    # --- the uniform interface ----------------------------------------------------
    def forward(self, x: torch.Tensor, temporal: bool | None = None) -> torch.Tensor:
        """Encode clips.

        Args:
            x: ``(N, C, T, H, W)`` float tensor, normalised with :meth:`normalize`.
            temporal: ``True`` for ``(N, T', D)``, ``False`` for ``(N, D)``;
                ``None`` follows the constructor's ``output``.
        """
        self.check_input(x)
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        want_temporal = self.output == "temporal" if temporal is None else temporal
        return self.forward_temporal(x) if want_temporal else self.forward_pooled(x)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, temporal: bool | None = None) -> torch.Tensor:
        """:meth:`forward` under ``torch.inference_mode`` (no autograd bookkeeping)."""
        return self(x, temporal=temporal)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`DataError` naming the backbone, the bad shape and the expected one."""
        name = self.registry_name()
        expected = f"(N, {self.in_channels}, {self.num_frames}, {self.input_size[0]}, {self.input_size[1]})"
        if not isinstance(x, torch.Tensor) or x.dim() != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"backbone {name!r}: expected a 5-D input (N, C, T, H, W) like {expected}, got {shape}")
        if x.shape[1] != self.in_channels:
            raise DataError(f"backbone {name!r}: expected {self.in_channels} channels {expected}, got {tuple(x.shape)}")
        if self.fixed_num_frames and x.shape[2] != self.num_frames:
            raise DataError(f"backbone {name!r}: needs exactly T={self.num_frames} frames {expected}, "
                            f"got {tuple(x.shape)}; build it with num_frames={x.shape[2]}")
        if self.fixed_input_size and tuple(x.shape[3:]) != tuple(self.input_size):
            raise DataError(f"backbone {name!r}: needs exactly {self.input_size} pixels {expected}, "
                            f"got {tuple(x.shape)}; build it with input_size={tuple(x.shape[3:])}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel of an ``(N, C, T, H, W)`` clip in the scale of :attr:`mean`."""
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A random normalised input of the declared shape ``(batch, C, T, H, W)``."""
        return torch.randn(batch, self.in_channels, self.num_frames, *self.input_size)

    def describe(self) -> dict[str, Any]:
        """The declared attributes as a plain dict (for listings and run records)."""
        return dict(name=self.registry_name(), modality=self.modality, feature_dim=self.feature_dim,
                    input_size=tuple(self.input_size), num_frames=self.num_frames, in_channels=self.in_channels,
                    mean=tuple(self.mean), std=tuple(self.std), output=self.output,
                    prefers_channels_last_3d=self.prefers_channels_last_3d,
                    params=sum(p.numel() for p in self.parameters()))

    @classmethod
    def registry_name(cls) -> str:
        """The name used in messages: the class name, which is also its BACKBONES name for vkit's own."""
        return cls.__name__

    def load_pretrained(self, pretrained: str | Path | None, strict: bool = True) -> None:
        """Load a local ``.safetensors`` state dict into this backbone (no-op for ``None``).

        Keys may be this module's (``net.conv1...``) or the wrapped network's
        (``conv1...``, as saved from the upstream model); a mismatch raises
        :class:`CheckpointError` listing the first missing/unexpected keys.
        """
        path = check_pretrained(pretrained, self.registry_name())
        if path is None:
            return
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own SafetensorError / OSError
            raise CheckpointError(f"backbone {self.registry_name()!r}: cannot read {str(path)!r}: {err}") from err
        target: nn.Module = self
        inner = getattr(self, "net", None)
        own = set(self.state_dict())
        if isinstance(inner, nn.Module) and not own & set(state) and set(inner.state_dict()) & set(state):
            target = inner
        result = target.load_state_dict(state, strict=False)
        if strict and (result.missing_keys or result.unexpected_keys):
            raise CheckpointError(
                f"backbone {self.registry_name()!r}: {str(path)!r} does not match the model: "
                f"missing {result.missing_keys[:5]} ({len(result.missing_keys)}), "
                f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})")
