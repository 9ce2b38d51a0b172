"""medical-diagnosis defaults: config merges, the avg+max-pooled TinyC3D finds a small finding anywhere, compression stages exist.

The CLI end to end (stored run, ``vkit predict`` reproducing the stored
probabilities, ``--skip-bad``) is tested in tests/e2e/test_medical_cli.py.
"""
from __future__ import annotations

import pytest
import torch

from vkit.core.model import build_model
from vkit.plugins.medical.task import SIZE, MedicalDiagnosisTask
from vkit.registry.registries import COMPRESSORS
from vkit.workflows.config import build_config


def _config(overrides=()):
    task = MedicalDiagnosisTask
    return build_config(task.default_config, None, list(overrides), free_keys=task.free_keys)


def test_default_model_pools_average_and_max_of_the_volume():
    cfg = _config()
    model = build_model(cfg.model)
    backbone = model.backbones["volume"]
    assert backbone.pool == "avgmax" and backbone.feature_dim == 96
    assert 50_000 < sum(p.numel() for p in model.parameters()) < 60_000
    logits = model({"volume": torch.zeros(2, 1, SIZE, SIZE, SIZE)})
    assert logits.shape == (2, 2)


def test_smoke_overrides_give_a_tiny_valid_config():
    cfg = _config(MedicalDiagnosisTask.smoke_overrides)
    assert cfg.train.epochs == 1 and cfg.data.synthetic.n_train == 8 and cfg.data.synthetic.size >= 24
    assert list(cfg.compression.stages) == []
    model = build_model(cfg.model)
    assert model({"volume": torch.zeros(1, 1, 16, 16, 16)}).shape == (1, 2)


def test_max_pooling_keeps_a_small_finding_wherever_it_is():
    """Why the default pools the max too: one bright 3-voxel cube moves the pooled feature as much anywhere."""
    torch.manual_seed(0)
    cfg = _config()
    pooled = {}
    for pool in ("avg", "max"):
        backbone = build_model(dict(cfg.model, backbones=dict(volume=dict(cfg.model.backbones.volume, pool=pool))))
        backbone = backbone.backbones["volume"].eval()
        torch.manual_seed(0)
        for m in backbone.modules():  # deterministic, position-independent weights for the comparison
            if isinstance(m, torch.nn.Conv3d):
                torch.nn.init.normal_(m.weight, std=0.2)
        with torch.no_grad():
            empty = backbone(torch.zeros(1, 1, SIZE, SIZE, SIZE))
            shifts = []
            for z, y, x in ((4, 4, 4), (16, 16, 16), (24, 8, 20)):
                volume = torch.zeros(1, 1, SIZE, SIZE, SIZE)
                volume[..., z:z + 3, y:y + 3, x:x + 3] = 5.0
                shifts.append(float((backbone(volume) - empty).abs().max()))
        pooled[pool] = shifts
    assert min(pooled["max"]) > 5 * max(pooled["avg"]), pooled
    assert max(pooled["max"]) < 1.5 * min(pooled["max"]), pooled  # position barely matters


def test_default_compression_chain_is_conv_sensible_recovered_and_gated():
    compression = _config().compression
    stages = [s["type"] for s in compression.stages]
    assert stages == ["ChannelPrune", "CastBF16"]  # DynamicQuantize only touches Linear layers: not for this conv net
    # the pruned model is distilled back before the gate, for a budget that follows train.epochs (issue 25)
    assert compression.stages[0]["recover"] == {"mode": "distill"}
    for stage in compression.stages:
        assert COMPRESSORS.get(stage["type"]) is not None
    assert compression.max_metric_drop == pytest.approx(0.01) and compression.metric == "auc"
