"""``VideoModel``: {modality: backbone} → fusion → head, an mmengine ``BaseModel``.

Built entirely from a config dict through the registries, so a plugin's
backbone, fusion or head slots in by name::

    model = MODELS.build(dict(
        type='VideoModel',
        backbones=dict(volume=dict(type='TinyC3D', in_channels=1)),
        head=dict(type='ClsHead', num_classes=2),
    ))
    # one modality: no fusion needed; several: fusion=dict(type='Concat', dim=128)

Batches come from ``VideoDataPreprocessor`` as
``inputs={modality: Tensor (N, C, T, H, W)}`` and ``data_samples`` (a list of
dicts with ``label`` and ``case_id``). ``mode='predict'`` returns one dict per
sample, ``{"probs", "label", "case_id"}``: what vkit's metrics consume; with a head
whose ``output`` is ``"value"`` (:class:`~vkit.core.heads.RegressionHead`) it is
``{"value", "label", "case_id"}``: the predicted values, not softmaxed, and the
float labels reach the head's loss unchanged (:func:`model_outputs`, :func:`labels_tensor`).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import nn

from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import BACKBONES, FUSIONS, HEADS, MODELS


@MODELS.register_module()
class VideoDataPreprocessor(BaseDataPreprocessor):
    """Moves a collated batch to the model's device and normalises each modality.

    Args:
        mean: optional ``{modality: per-channel mean}`` subtracted from the inputs.
        std: optional ``{modality: per-channel std}`` the inputs are divided by.
        channels_last: use ``torch.channels_last_3d`` for 5-D inputs (faster for
            conv backbones on CPU).

    Accepts the output of mmengine's ``default_collate`` on vkit samples:
    ``{"inputs": {modality: Tensor}, "label": Tensor, "case_id": [str, ...], ...}``.
    """

    def __init__(
        self,
        mean: Mapping[str, Sequence[float]] | None = None,
        std: Mapping[str, Sequence[float]] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.mean = {k: list(v) for k, v in (mean or {}).items()}
        self.std = {k: list(v) for k, v in (std or {}).items()}
        for key, values in self.std.items():
            if any(v <= 0 for v in values):
                raise ConfigError(f"data_preprocessor.std.{key}: expected positive values, got {values}")
        self.channels_last = channels_last

    def _normalise(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if modality in self.mean:
            x = x - x.new_tensor(self.mean[modality]).view(shape)
        if modality in self.std:
            x = x / x.new_tensor(self.std[modality]).view(shape)
        if self.channels_last and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data.get("inputs")
        if not isinstance(inputs, Mapping):
            raise ConfigError(f"batch 'inputs': expected a dict {{modality: tensor}}, got {type(inputs).__name__}")
        inputs = {m: self._normalise(m, x) for m, x in inputs.items()}
        n = next(iter(inputs.values())).shape[0]
        samples = []
        for i in range(n):
            sample: dict[str, Any] = {}
            for key, value in data.items():
                if key == "inputs":
                    continue
                sample[key] = value[i].item() if isinstance(value, torch.Tensor) and value.dim() == 1 else value[i]
            samples.append(sample)
        return {"inputs": inputs, "data_samples": samples}


class FeatureNorm(nn.BatchNorm1d):
    """Features standardised by their training statistics: ``BatchNorm1d`` without affine parameters whose
    running statistics are the mean over all training batches (``momentum=None``). A one-sample training batch
    (the last of an epoch) is normalised with the statistics so far, where BatchNorm would fail."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, affine=False, momentum=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(x)


@MODELS.register_module()
class VideoModel(BaseModel):
    """Backbones per modality, an optional fusion and a head, trained by mmengine's Runner.

    Args:
        backbones: ``{modality: backbone config}`` (BACKBONES registry).
        head: head config (HEADS registry); ``in_dim`` is filled in from the
            fused feature width. A head has ``forward(features) -> logits`` and
            ``loss(logits, labels) -> Tensor``. Leave it out when the fusion
            already produces logits (``LateFusion``); cross-entropy is the loss then.
        fusion: fusion config (FUSIONS registry); required with more than one
            modality; ``in_dims`` is filled in from the backbones.
        data_preprocessor: config of the preprocessor (default
            ``VideoDataPreprocessor``).
        freeze_backbones: keep backbone weights fixed (features only).
        feature_norm: standardise the fused features before the head (``BatchNorm1d`` without affine
            parameters, averaged over all training batches); ``train.feature_norm`` turns it on for a run.
    """

    def __init__(
        self,
        backbones: Mapping[str, dict],
        head: dict | None = None,
        fusion: dict | None = None,
        data_preprocessor: dict | None = None,
        freeze_backbones: bool = False,
        feature_norm: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        preprocessor = dict(data_preprocessor or {})
        preprocessor.setdefault("type", VideoDataPreprocessor)
        super().__init__(data_preprocessor=MODELS.build(preprocessor), init_cfg=init_cfg)
        if not backbones:
            raise ConfigError("model.backbones: expected at least one {modality: backbone config}")
        self.backbones = nn.ModuleDict({m: BACKBONES.build(cfg) for m, cfg in backbones.items()})
        in_dims = {m: int(b.feature_dim) for m, b in self.backbones.items()}
        if fusion is None:
            if len(in_dims) > 1:
                raise ConfigError(f"model.fusion: {len(in_dims)} modalities {sorted(in_dims)} need a fusion config")
            self.fusion = None
            fused_dim = next(iter(in_dims.values()))
        else:
            self.fusion = FUSIONS.build(fusion, default_args=dict(in_dims=in_dims))
            fused_dim = int(self.fusion.out_dim)
        self.fused_dim = fused_dim
        if getattr(self.fusion, "produces_logits", False):
            if head is not None:
                raise ConfigError(f"model.head: {type(self.fusion).__name__} already produces logits; remove the head")
            self.head = None
        elif head is None:
            raise ConfigError("model.head: required (e.g. dict(type='ClsHead', num_classes=2))")
        else:
            self.head = HEADS.build(head, default_args=dict(in_dim=fused_dim))
        from vkit.core.heads import head_output

        #: ``"probs"`` or ``"value"``: what ``mode='predict'`` hands the metric (the head's declared ``output``).
        self.output = "probs" if self.head is None else head_output(self.head)
        self.freeze_backbones = freeze_backbones
        if freeze_backbones:
            self.backbones.requires_grad_(False)
        self.feature_norm: FeatureNorm | None = None
        if feature_norm:
            self.standardise_features()

    def standardise_features(self) -> None:
        """Standardise the features before the head from now on; a saved model is rebuilt with it
        (``model_config['feature_norm']``). ``momentum=None``: the statistics are the mean over all training
        batches, not an exponential average: exact for a frozen backbone (``linear_probe``), whose features do
        not drift; for a fine-tuned one (``finetune``, backbone at 0.1x lr) an average over its training."""
        if self.head is None:
            raise ConfigError(f"train.feature_norm: {type(self.fusion).__name__} already produces logits; there are "
                              f"no features before a head to standardise")
        if self.feature_norm is None:
            self.feature_norm = FeatureNorm(self.fused_dim)
        config = getattr(self, "model_config", None)
        if isinstance(config, dict):
            config["feature_norm"] = True

    def extract_feat(self, inputs: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Features of each modality, fused into one ``(N, D)`` tensor."""
        missing = set(self.backbones) - set(inputs)
        if missing:
            raise ConfigError(f"model inputs: missing modalities {sorted(missing)}; got {sorted(inputs)}")
        feats = {m: self.backbones[m](inputs[m]) for m in self.backbones}
        if self.fusion is None:
            return next(iter(feats.values()))
        return self.fusion(feats, mask=mask)

    def forward(self, inputs: Mapping[str, torch.Tensor], data_samples: list[dict] | None = None, mode: str = "tensor") -> Any:
        features = self.extract_feat(inputs)
        if self.feature_norm is not None:
            features = self.feature_norm(features)
        logits = features if self.head is None else self.head(features)
        if mode == "tensor":
            return logits
        if data_samples is None:
            raise ConfigError(f"VideoModel.forward(mode={mode!r}) needs data_samples with labels")
        if mode == "loss":
            labels = labels_tensor(data_samples, self.output).to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits, labels) if self.head is None else self.head.loss(logits, labels)
            return {"loss": loss}
        if mode == "predict":
            key, values = model_outputs(logits, self.output)
            return [dict(sample, **{key: v}) for sample, v in zip(data_samples, values.detach().cpu())]
        raise ConfigError(f"VideoModel.forward: mode must be 'tensor', 'loss' or 'predict', got {mode!r}")


def labels_tensor(data_samples: Sequence[Mapping[str, Any]], output: str = "probs") -> torch.Tensor:
    """The batch's labels for the loss: class indices (``int64``) for a ``"probs"`` head, the float targets
    as given (``float32``, ``(N,)`` or ``(N, K)``) for a ``"value"`` head.

    A class label must be a whole number: ``2.0`` is class 2, ``2.5`` is a :class:`DataError` naming the
    case (a regression target needs a head whose ``output`` is ``"value"``, e.g. ``RegressionHead``).

    Example::

        labels_tensor([dict(label=3.5, case_id="a")], "value")   # tensor([3.5000])
    """
    if output == "value":
        return torch.stack([torch.as_tensor(s["label"], dtype=torch.float32) for s in data_samples])
    labels = []
    for sample in data_samples:
        label = sample["label"]
        value = float(label)
        if not math.isfinite(value) or value != int(value):
            raise DataError(f"case {str(sample.get('case_id', '?'))!r}: label {value!r} is not a class index; a float "
                            "target needs a regression head (e.g. dict(type='RegressionHead'))")
        labels.append(int(value))
    return torch.as_tensor(labels, dtype=torch.int64)


def model_outputs(logits: torch.Tensor, output: str = "probs") -> tuple[str, torch.Tensor]:
    """``("probs", class probabilities)`` from logits, or ``("value", the values (N, K) as float32)`` unchanged.

    Example::

        model_outputs(torch.tensor([[2.5]]), "value")   # ('value', tensor([[2.5000]]))
    """
    if output == "value":
        values = logits.float()
        return "value", values.reshape(values.shape[0], -1) if values.dim() != 2 else values
    return "probs", _probabilities(logits)


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities: softmax over classes; one logit means a binary score (sigmoid → 2 columns)."""
    if logits.dim() == 1 or logits.shape[-1] == 1:
        p = torch.sigmoid(logits.reshape(-1))
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(logits.float(), dim=-1)


def build_model(model_cfg: dict) -> torch.nn.Module:
    """A model from a task's ``model`` section (``type`` defaults to ``VideoModel``)."""
    cfg = copy.deepcopy(dict(model_cfg))
    cfg.setdefault("type", "VideoModel")
    model = MODELS.build(copy.deepcopy(cfg))
    from vkit.core.weights.options import without_pretrained

    # what a saved (or compressed) model is rebuilt from (vkit.core.trained, vkit.core.compression.load_compressed):
    # its backbones' weights are in the checkpoint, so the pretrained files they started from are not read again
    model.model_config = without_pretrained(cfg)
    return model
