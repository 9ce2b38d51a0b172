"""Tests of vkit.core.compat: each fix fails without it (subprocess) and works with it."""
from __future__ import annotations

import importlib.metadata
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from vkit.core import compat
from vkit.registry.errors import RegistryError, VkitError


def _python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter of this venv (nothing of this process leaks in)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


# --- mmaction2 1.2.0: missing localizers.drn -------------------------------------------------


def test_mmaction_models_import_fails_without_fix() -> None:
    proc = _python("import mmaction.models")
    assert proc.returncode != 0
    assert "ModuleNotFoundError: No module named 'mmaction.models.localizers.drn'" in proc.stderr


def test_ensure_mmaction_fixes_import_and_fills_registry() -> None:
    proc = _python(
        """
        from vkit.core import compat
        m = compat.ensure_mmaction()
        assert compat.ensure_mmaction() is m
        import mmaction.models
        from mmaction.registry import MODELS
        print(m.__name__, MODELS.get('X3D').__name__, MODELS.get('Recognizer3D').__name__)
        try:
            MODELS.build(dict(type='DRN'))
        except Exception as err:
            print(type(err).__name__, err)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "mmaction X3D Recognizer3D"
    assert lines[1].startswith("RegistryError DRN is missing from the mmaction2 1.2.0 wheel (open-mmlab/mmaction2#2714)")
    assert "MultiScaleDeformableAttention" not in proc.stderr


def test_drn_placeholder_raises_clear_error() -> None:
    with pytest.raises(RegistryError, match=r"DRN is missing from the mmaction2 1\.2\.0 wheel \(open-mmlab/mmaction2#2714\)"):
        compat.DRN(num_classes=3)


def test_ensure_mmaction_is_idempotent_in_process() -> None:
    first = compat.ensure_mmaction()
    assert compat.ensure_mmaction() is first
    assert sys.modules["mmaction.models.localizers.drn.drn"].DRN is compat.DRN
    from mmaction.registry import MODELS

    assert MODELS.get("DRN") is compat.DRN


# --- importlib_metadata, undeclared by mmaction2 1.2.0 ---------------------------------------


def test_vkit_declares_importlib_metadata() -> None:
    requires = importlib.metadata.requires("vkit") or []
    assert any(r.split(";")[0].strip().startswith("importlib_metadata") for r in requires), requires


def test_mmaction_needs_importlib_metadata() -> None:
    blocked = _python(
        """
        import sys
        sys.modules['importlib_metadata'] = None   # as if not installed
        import mmaction.utils.dependency
        """
    )
    assert blocked.returncode != 0
    assert "importlib_metadata" in blocked.stderr
    import importlib_metadata  # noqa: F401  (installed as vkit's dependency)
    import mmaction
    import mmaction.utils.dependency

    assert mmaction.__version__ == "1.2.0"
    assert mmaction.utils.dependency.distribution is importlib_metadata.distribution


# --- versions ---------------------------------------------------------------------------------


def test_check_versions_installed() -> None:
    found = compat.check_versions()
    assert found == {"mmcv": importlib.metadata.version("mmcv-lite"), "mmengine": importlib.metadata.version("mmengine")}


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"mmcv": "2.2.0"}, "mmcv 2.2.0 is installed; mmaction2 1.2.0 requires mmcv>=2.0.0rc4,<2.2.0"),
        ({"mmcv": "1.7.1"}, "mmcv 1.7.1 is installed; mmaction2 1.2.0 requires mmcv>=2.0.0rc4,<2.2.0"),
        ({"mmengine": "1.0.0"}, "mmengine 1.0.0 is installed; mmaction2 1.2.0 requires mmengine>=0.7.1,<1.0.0"),
        ({"mmcv": None}, "mmcv is not installed; mmaction2 1.2.0 requires mmcv>=2.0.0rc4,<2.2.0"),
    ],
)
def test_check_versions_out_of_range(installed: dict, expected: str) -> None:
    with pytest.raises(VkitError, match="incompatible versions") as info:
        compat.check_versions(installed)
    assert expected in str(info.value)


def test_check_versions_in_range() -> None:
    assert compat.check_versions({"mmcv": "2.1.0", "mmengine": "0.10.7"}) == {"mmcv": "2.1.0", "mmengine": "0.10.7"}


# --- torch>=2.6 weights_only vs mmengine checkpoints -----------------------------------------


def _tiny_runner(work_dir: Path, epochs: int, **kwargs):
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    class Tiny(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x, y, mode="tensor"):
            out = self.fc(x).squeeze(-1)
            if mode == "loss":
                return {"loss": ((out - y) ** 2).mean()}
            if mode == "predict":
                return [dict(pred=float(o), y=float(t)) for o, t in zip(out, y)]
            return out

    class Pairs(Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict:
            return dict(x=torch.tensor([float(i), 1.0]), y=torch.tensor(float(i % 2)))

    class Err(BaseMetric):
        def process(self, data_batch, data_samples) -> None:
            self.results.extend(abs(s["pred"] - s["y"]) for s in data_samples)

        def compute_metrics(self, results) -> dict:
            return {"err": sum(results) / len(results)}

    loader = dict(dataset=Pairs(), batch_size=4, sampler=dict(type="DefaultSampler", shuffle=False),
                  collate_fn=dict(type="default_collate"))
    return Runner(
        model=Tiny(), work_dir=str(work_dir), train_dataloader=loader, val_dataloader=loader,
        val_evaluator=[Err()], val_cfg=dict(), train_cfg=dict(by_epoch=True, max_epochs=epochs),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.5, by_epoch=True, begin=0, end=1),
                         dict(type="MultiStepLR", milestones=[1], by_epoch=True)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, save_best="err", rule="less")),
        log_level="WARNING", **kwargs,
    )


@pytest.fixture(scope="module")
def mmengine_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work_dir = tmp_path_factory.mktemp("mmengine_run")
    _tiny_runner(work_dir, epochs=1).train()
    return work_dir / "epoch_1.pth"


def test_mmengine_checkpoint_refused_without_fix(mmengine_ckpt: Path) -> None:
    proc = _python(
        f"""
        from mmengine.runner.checkpoint import _load_checkpoint
        _load_checkpoint({str(mmengine_ckpt)!r})
        """
    )
    assert proc.returncode != 0
    assert "Weights only load failed" in proc.stderr
    assert "mmengine.logging.history_buffer.HistoryBuffer" in proc.stderr


def test_mmengine_checkpoint_loads_and_resumes_with_fix(mmengine_ckpt: Path, tmp_path: Path) -> None:
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint

    compat.apply(mmaction=False)
    compat.apply(mmaction=False)  # idempotent
    ckpt = _load_checkpoint(str(mmengine_ckpt))
    assert set(ckpt) >= {"meta", "state_dict", "message_hub", "optimizer", "param_schedulers"}
    loss = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 2
    assert loss.statistics("mean") == pytest.approx(float(loss.data[0].mean()))

    runner = _tiny_runner(tmp_path, epochs=2, resume=True, load_from=str(mmengine_ckpt))
    runner.train()
    assert runner.epoch == 2
    assert (tmp_path / "epoch_2.pth").is_file()
    assert not (tmp_path / "epoch_1.pth").exists()  # training started from the resumed epoch 1


def test_allow_list_keeps_weights_only_safe(tmp_path: Path) -> None:
    from mmengine.logging import HistoryBuffer

    compat.allow_mmengine_checkpoints()

    class Sneaky:
        def __reduce__(self):
            return getattr, (HistoryBuffer, "__init__")

    path = tmp_path / "sneaky.pth"
    torch.save({"x": Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"refused getattr"):
        torch.load(path, weights_only=True)
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('x')",)

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pth", weights_only=True)
    assert not marker.exists()
