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
import contextvars
import inspect
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vkit.registry.errors import ConfigError, DataError

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


def check_pretrained(pretrained: str | Path | None, owner: str) -> str | Path | None:
    """Validate a ``pretrained=`` value before anything is built: ``None``, ``run:ID``, or a local weights
    file (``.safetensors``, ``.pth/.pt/.ckpt/.bin`` read with ``torch.load(weights_only=True)``) or MONAI
    bundle folder (:func:`vkit.core.weights.formats.weights_path`).

    Args:
        pretrained: the value given to the backbone.
        owner: the backbone's registered name, for the message.

    Returns:
        The value (a path for a file), or ``None``.
    """
    if pretrained is None:
        return None
    if not isinstance(pretrained, (str, Path)):
        raise ConfigError(f"backbone {owner!r}: pretrained must be None, run:ID or a path to a weights file, "
                          f"got {type(pretrained).__name__} {pretrained!r}")
    if is_url(str(pretrained)):
        raise ConfigError(f"backbone {owner!r}: pretrained={str(pretrained)!r} is a URL; {_SAFETENSORS_HOWTO}")
    from vkit.core.weights.load import RUN_PREFIX

    if str(pretrained).startswith(RUN_PREFIX):
        return str(pretrained)
    from vkit.core.weights.formats import weights_path

    return weights_path(pretrained, f"backbone {owner!r}")


#: ``pretrained_prefix`` / ``pretrained_strict`` of the backbone being constructed (see :class:`_LoadsPretrained`).
_LOAD_OPTIONS: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("vkit_pretrained_options", default={})


class _LoadsPretrained(type):
    """Every backbone takes ``pretrained_prefix`` and ``pretrained_strict`` without declaring them.

    They are taken out of the constructor's keyword arguments (so a subclass passing ``**overrides``
    to an upstream class never sees them) and read by :meth:`Backbone.load_pretrained` while this
    backbone is being built.
    """

    def __call__(cls, *args: Any, pretrained_prefix: str | None = None, pretrained_strict: bool = True,
                 **kwargs: Any) -> Any:
        name = getattr(cls, "__name__", "backbone")
        if pretrained_prefix is not None and not isinstance(pretrained_prefix, str):
            raise ConfigError(f"backbone {name!r}: pretrained_prefix={pretrained_prefix!r}; expected text such as "
                              f"'backbone.' ('' strips nothing) or None (automatic)")
        if not isinstance(pretrained_strict, bool):
            raise ConfigError(f"backbone {name!r}: pretrained_strict={pretrained_strict!r}; expected true or false")
        token = _LOAD_OPTIONS.set(dict(prefix=pretrained_prefix, strict=pretrained_strict))
        try:
            return super().__call__(*args, **kwargs)
        finally:
            _LOAD_OPTIONS.reset(token)

    @property
    def __signature__(cls) -> inspect.Signature:
        """The constructor's signature (what ``inspect.signature(X3D)`` gives without this metaclass)."""
        init = inspect.signature(cls.__init__)  # type: ignore[misc]
        return init.replace(parameters=list(init.parameters.values())[1:])


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


def accepted_keys(cls: Any) -> set[str] | None:
    """The config keys backbone class ``cls`` takes besides ``type``: its constructor's named arguments, its
    ``config_keys`` and, where ``**overrides`` pass through to an upstream class (``cls.upstream_class()``, e.g.
    mmaction2's ``X3D``), that class's named arguments (up its bases while they take ``**kwargs`` too);
    ``None`` when a ``**kwargs`` goes somewhere vkit cannot see (no check is possible)."""
    def named(fn: Any) -> tuple[set[str], bool]:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return set(), True
        keys = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        return keys, any(p.kind is p.VAR_KEYWORD for p in params)

    keys, open_ = named(cls)
    keys |= set(getattr(cls, "config_keys", ()))
    if open_:
        upstream = getattr(cls, "upstream_class", None)
        up = upstream() if callable(upstream) else None
        if up is None:
            return None
        for base in inspect.getmro(up):
            if base in (nn.Module, object):
                break
            more, still_open = named(base.__init__)
            keys |= more
            if not still_open:
                break
    return keys


class Backbone(nn.Module, metaclass=_LoadsPretrained):
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
        pretrained: ``None``, ``run:ID``, a local weights file (``.safetensors``;
            ``.pth/.pt/.ckpt/.bin`` through ``torch.load(weights_only=True)``) or a
            MONAI bundle folder, loaded by :meth:`load_pretrained` at the end of the
            subclass ``__init__`` (:mod:`vkit.core.weights`); a URL raises
            :class:`ConfigError` (nothing can be downloaded).
        pretrained_prefix: (any backbone, not declared) the prefix to strip from the
            file's keys (``'backbone.'``); ``None``: found automatically.
        pretrained_strict: (any backbone, not declared) ``False`` loads a partial match.
    """

    modality: ClassVar[str] = "video"
    #: Config keys every backbone takes besides its constructor's (consumed by :class:`_LoadsPretrained`).
    config_keys: ClassVar[tuple[str, ...]] = ("pretrained_prefix", "pretrained_strict")
    #: Model-key prefixes of the upstream network's classifier, which the backbone drops: a file's
    #: ``fc.weight`` is *ignored* when loading, not unexpected (e.g. ``("net.fc.",)``).
    pretrained_ignore: ClassVar[tuple[str, ...]] = ()
    #: What :meth:`load_pretrained` did (``None`` until weights are loaded).
    pretrained_report: Any = None
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

    def load_pretrained(self, pretrained: str | Path | None, strict: bool | None = None,
                        prefix: str | None = None, store: Any = None) -> Any:
        """Load ``pretrained`` into this backbone (no-op for ``None``) and keep the report in :attr:`pretrained_report`.

        Keys may be this module's (``net.conv1...``), the wrapped network's
        (``conv1...``), or either under a checkpoint's prefix (``backbone.``,
        ``module.`` ...): :func:`vkit.core.weights.load.load_weights` finds the
        one mapping that fits. A partial match raises :class:`CheckpointError`
        listing the first missing/unexpected keys unless ``strict`` is false.
        ``strict`` and ``prefix`` default to the ``pretrained_strict`` /
        ``pretrained_prefix`` this backbone was built with.
        """
        if check_pretrained(pretrained, self.registry_name()) is None:
            return None
        from vkit.core.weights.load import load_weights

        options = _LOAD_OPTIONS.get()
        inner = getattr(self, "net", None)
        report = load_weights(
            self, pretrained, prefix=prefix if prefix is not None else options.get("prefix"),
            strict=strict if strict is not None else options.get("strict", True), ignore=self.pretrained_ignore,
            model_prefixes=("net.",) if isinstance(inner, nn.Module) else (), store=store,
            owner=f"backbone {self.registry_name()!r}")
        self.pretrained_report = report
        return report
