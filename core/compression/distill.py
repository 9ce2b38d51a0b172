"""Knowledge distillation stage: train a smaller student on the teacher's soft labels with mmengine's Runner.

Example::

    stage = Distill(student=dict(type='VideoModel', backbones=dict(video=dict(type='TinyC3D', width=8)),
                                 head=dict(type='ClsHead', num_classes=5)),
                    temperature=4.0, alpha=0.7, epochs=3)
    student = stage.apply(teacher, ctx)    # ctx.train_dataloader is required
"""
from __future__ import annotations

import uuid
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import DataLoader

from vkit.core.compression.base import CompressionContext, Stage
from vkit.core.compression.measure import call_model
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import COMPRESSORS, MODELS


def _two_class(logits: torch.Tensor) -> torch.Tensor:
    """One binary logit ``z`` -> logits ``[0, z]`` (softmax of which is ``[1 - sigmoid(z), sigmoid(z)]``)."""
    if logits.dim() == 1:
        logits = logits[:, None]
    if logits.shape[-1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=-1)
    return logits


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float) -> dict[str, torch.Tensor]:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``, as two named losses."""
    s, t = _two_class(student), _two_class(teacher.detach())
    kd = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.softmax(t / temperature, dim=-1), reduction="batchmean")
    ce = F.cross_entropy(s, labels.long())
    return {"loss_kd": alpha * temperature**2 * kd, "loss_ce": (1 - alpha) * ce}


def _labels(value: Any) -> torch.Tensor:
    """Labels from a tensor, a list of ``{'label': ...}`` dicts or of mmaction data samples (``gt_label``)."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1)
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        if isinstance(first, dict) and "label" in first:
            return torch.as_tensor([int(s["label"]) for s in value])
        if hasattr(first, "gt_label"):
            return torch.cat([torch.as_tensor(s.gt_label).reshape(-1) for s in value])
    raise DataError(
        f"Distill: cannot find labels in the batch ({type(value).__name__}); expected (inputs, labels) tuples, "
        "dicts with 'inputs' and 'labels', or 'data_samples' with a 'label'"
    )


class KDModel(BaseModel):
    """Teacher (frozen, eval) + student; ``mode='loss'`` returns the KD and CE losses of the student.

    ``mode='predict'`` is the student's own (an mmengine ``BaseModel``), so a
    Runner with a val loop can train it. Batches: ``(inputs, labels)`` tuples, ``{'inputs', 'labels'}`` dicts, or
    whatever the teacher's own data preprocessor turns into
    ``{'inputs', 'data_samples'}`` (e.g. vkit's ``VideoModel``).

    Args:
        teacher: the trained model, called as ``teacher(inputs)`` -> logits.
        student: the model to train, same call and logits shape.
        temperature: softening temperature ``T`` (> 0).
        alpha: weight of the KD term, in [0, 1]; ``1 - alpha`` weighs the CE term.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, temperature: float, alpha: float) -> None:
        preprocessor = teacher.data_preprocessor if isinstance(teacher, BaseModel) else None
        super().__init__(data_preprocessor=preprocessor)
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = student
        self.temperature = temperature
        self.alpha = alpha

    def init_weights(self) -> None:
        """Nothing: the teacher is trained and the student was initialised when built."""

    def train(self, mode: bool = True) -> KDModel:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, inputs: Any, data_samples: Any = None, labels: Any = None, mode: str = "loss") -> Any:
        if mode == "predict" and isinstance(self.student, BaseModel):
            return self.student(inputs, data_samples, mode="predict")  # a Runner's val loop scores the student
        logits = self.student(inputs)
        if mode == "tensor":
            return logits
        if mode != "loss":
            raise ConfigError(f"KDModel.forward: mode must be 'loss', 'tensor' or 'predict' (mmengine student), got {mode!r}")
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        target = _labels(labels if labels is not None else data_samples).to(logits.device)
        return kd_loss(logits, teacher_logits, target, self.temperature, self.alpha)


@COMPRESSORS.register_module()
class Distill(Stage):
    """Replaces the model by a smaller student trained to match it (knowledge distillation).

    The student is built from ``student`` (vkit MODELS registry, which also
    reaches backbones by scoped name and accepts a class as ``type``) and
    trained with mmengine's ``Runner`` on ``ctx.train_dataloader`` for
    ``epochs`` epochs with the loss ``alpha * T^2 * KL + (1 - alpha) * CE``
    (:class:`KDModel`). No checkpoints are written.

    Args:
        student: config dict of the student model (``model(inputs) -> logits``
            with the teacher's logits shape), or an ``nn.Module``.
        temperature: softening temperature (> 0).
        alpha: weight of the KD term, in [0, 1].
        epochs: training epochs (>= 1).
        lr: AdamW learning rate.
        seed: seed of the Runner.

    Example::

        Distill(student=dict(type='VideoModel', backbones=dict(video=dict(type='TinyC3D')),
                             head=dict(type='ClsHead', num_classes=2)), epochs=2)
    """

    def __init__(
        self,
        student: dict | nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.7,
        epochs: int = 1,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(student, (dict, nn.Module)) or (isinstance(student, dict) and "type" not in student):
            raise ConfigError(f"Distill.student: expected a model config dict with 'type' or an nn.Module, got {student!r}")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError(f"Distill.temperature: expected a positive number, got {temperature!r}")
        if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ConfigError(f"Distill.alpha: expected a number in [0, 1], got {alpha!r}")
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"Distill.epochs: expected an int >= 1, got {epochs!r}")
        if not isinstance(lr, (int, float)) or lr <= 0:
            raise ConfigError(f"Distill.lr: expected a positive number, got {lr!r}")
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.epochs = epochs
        self.lr = float(lr)
        self.seed = seed

    def _build_student(self) -> nn.Module:
        if isinstance(self.student, nn.Module):
            return self.student
        return MODELS.build(dict(self.student))

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        from mmengine.runner import Runner

        loader = ctx.train_dataloader
        if loader is None:
            raise ConfigError("Distill: the compression context has no train_dataloader; distillation needs training data")
        if not isinstance(loader, (DataLoader, dict)):
            raise ConfigError(
                f"Distill: train_dataloader must be a torch DataLoader or an mmengine dataloader config, got {type(loader).__name__}"
            )
        student = self._build_student()
        with torch.no_grad():
            shapes = tuple(call_model(model.eval(), ctx.sample).shape), tuple(call_model(student.eval(), ctx.sample).shape)
        if shapes[0] != shapes[1]:
            raise ConfigError(f"Distill.student: its output shape {shapes[1]} differs from the teacher's {shapes[0]}")
        runner = Runner(
            model=KDModel(model, student, self.temperature, self.alpha),
            work_dir=str(ctx.dir() / "distill"),
            train_dataloader=loader,
            train_cfg=dict(by_epoch=True, max_epochs=self.epochs),
            optim_wrapper=dict(optimizer=dict(type="AdamW", lr=self.lr)),
            default_hooks=dict(checkpoint=None),
            randomness=dict(seed=self.seed),
            experiment_name=f"distill-{uuid.uuid4().hex[:8]}",
            default_scope="mmengine",
            log_level="WARNING",
        )
        trained = runner.train()
        return trained.student.eval()
