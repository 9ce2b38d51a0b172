"""Model compression (COMPRESSORS registry): a chain of measured, metric-gated stages.

=================  ===========================================================
stage              what it does
=================  ===========================================================
MagnitudePrune     global unstructured L1 pruning of conv/linear weights
ChannelPrune       structured dependency-graph pruning (depthwise, residual, concat)
DynamicQuantize    int8 dynamic quantization of Linear/LSTM (torch.ao backend)
CastBF16/CastFP16  reduced-precision weights, skipped where the CPU lacks them
Distill            trains a smaller student on the model's soft labels
OnnxExport         ONNX file + onnxruntime session, checked against torch
=================  ===========================================================

Any stage config may add ``recover=dict(epochs=2, mode='distill'|'finetune')``:
a short retraining through ``ctx.train`` that the gate judges. Each applied
stage is saved (``ctx.work_dir``) and :func:`load_compressed` loads it back.

Example::

    from vkit.core.compression import CompressionChain, CompressionContext

    chain = CompressionChain.from_config(dict(
        stages=[dict(type='MagnitudePrune', amount=0.5), dict(type='DynamicQuantize')], max_metric_drop=0.01))
    result = chain.run(model, CompressionContext(sample=x, evaluate=lambda m: accuracy(m, val)))
"""
from __future__ import annotations

from vkit.core.compression.artifact import compressed_meta, load_compressed, save_stage
from vkit.core.compression.base import CompressionContext, CompressionError, Stage, StageSkipped
from vkit.core.compression.chain import REPORT_KEYS, CompressionChain, CompressionResult
from vkit.core.compression.distill import Distill, KDModel, kd_loss
from vkit.core.compression.measure import bytes_on_disk, count_params, latency_ms, measure, sparsity
from vkit.core.compression.onnx_export import OnnxExport, OrtModule
from vkit.core.compression.prune import ChannelPrune, MagnitudePrune
from vkit.core.compression.quantize import CastBF16, CastFP16, CastModel, DynamicQuantize, cpu_supports
from vkit.core.compression.recover import Recovery, runner_trainer

__all__ = [
    "CastBF16", "CastFP16", "CastModel", "ChannelPrune", "CompressionChain", "CompressionContext", "CompressionError",
    "CompressionResult", "Distill", "DynamicQuantize", "KDModel", "MagnitudePrune", "OnnxExport", "OrtModule",
    "REPORT_KEYS", "Recovery", "Stage", "StageSkipped", "bytes_on_disk", "compressed_meta", "count_params",
    "cpu_supports", "kd_loss", "latency_ms", "load_compressed", "measure", "runner_trainer", "save_stage", "sparsity",
]
