"""`vkit run medical-diagnosis` against a plain MONAI training script of the same network, data and epochs.

The peer (written here, no mmengine, no store, no report) reads the same
datalist through the same MONAI ``CacheDataset`` pipeline, trains the same
TinyC3D + ClsHead with AdamW + cosine for the same epochs and batch size,
picks the Youden threshold on validation and scores test ROC-AUC with
scikit-learn. The ratio is vkit's train+eval wall time over the peer's
(target <= 1.10x at equal AUC). Compression is off in both, so the engine and
store overhead is what is compared.

    python benchmarks/medical.py            # the default task config (200/50/100 cases of 32^3, 12 epochs)
    python benchmarks/medical.py --quick    # tiny (harness check)
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from vkit.plugins.medical.task import MedicalDiagnosisTask

QUICK = ["data.synthetic.n_train=16", "data.synthetic.n_val=8", "data.synthetic.n_test=8", "train.epochs=2"]


def vkit_run(root: Path, overrides: list[str]) -> tuple[float, float]:
    from vkit.workflows.run import run_task

    start = time.perf_counter()
    result = run_task("medical-diagnosis", overrides=overrides + ["compression.stages=[]"],
                      db_url=f"sqlite:///{root / 'bench.db'}", work_dir=root / "vkit", data_root=root / "data",
                      echo=lambda *_: None)
    return time.perf_counter() - start, result.metrics["test/auc"]


def plain_monai(root: Path, overrides: list[str]) -> tuple[float, float]:
    """The peer: MONAI data + a plain torch loop, same model, optimiser, schedule and seed."""
    from monai.data import CacheDataset, DataLoader

    from vkit.plugins.medical.data import build_transforms, load_datalist
    from vkit.registry.registries import BACKBONES, HEADS
    from vkit.workflows.config import build_config

    task = MedicalDiagnosisTask
    cfg = build_config(task.default_config, None, overrides, free_keys=task.free_keys)
    datalist = root / "data" / task.name / "datalist.json"
    start = time.perf_counter()
    torch.manual_seed(int(cfg.seed))
    splits = {}
    for split in ("training", "validation", "test"):
        cases = [dict(image=c["image"], label=c["label"]) for c in load_datalist(datalist, split)]
        splits[split] = CacheDataset(cases, build_transforms(dict(cfg.data.transforms), train=split == "training"),
                                     progress=False)
    backbone = BACKBONES.build(copy.deepcopy(cfg.model.backbones.volume))
    head = HEADS.build(dict(cfg.model.head, in_dim=backbone.feature_dim))
    model = torch.nn.Sequential(backbone, head)
    epochs, batch = int(cfg.train.epochs), int(cfg.train.batch_size)
    loader = DataLoader(splits["training"], batch_size=batch, shuffle=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=float(cfg.train.lr), weight_decay=float(cfg.train.weight_decay))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * len(loader))
    for _ in range(epochs):
        model.train()
        for item in loader:
            optimiser.zero_grad()
            loss = head.loss(model(item["image"].float()), item["label"].long())
            loss.backward()
            optimiser.step()
            scheduler.step()

    def scores(split: str) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        ys, ps = [], []
        with torch.inference_mode():
            for item in DataLoader(splits[split], batch_size=batch):
                ps.append(torch.softmax(model(item["image"].float()), -1)[:, 1])
                ys.append(item["label"])
        return torch.cat(ys).numpy(), torch.cat(ps).numpy()

    scores("validation")  # the threshold pick costs a validation pass in both
    labels, probs = scores("test")
    return time.perf_counter() - start, float(roc_auc_score(labels, probs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    overrides = QUICK if args.quick else []
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="vkit-bench-medical-") as tmp:
        root = Path(tmp)
        from vkit.plugins.medical.synthetic import generate_dataset
        from vkit.workflows.config import build_config

        cfg = build_config(MedicalDiagnosisTask.default_config, None, overrides, free_keys=MedicalDiagnosisTask.free_keys)
        generate_dataset(root / "data" / MedicalDiagnosisTask.name, seed=int(cfg.seed), **cfg.data.synthetic)
        peer_s, peer_auc = plain_monai(root, overrides)
        vkit_s, vkit_auc = vkit_run(root, overrides)
    print(f"medical-diagnosis, {'quick' if args.quick else 'default'} config, 2 threads (data generated beforehand)")
    print(f"{'':<14} {'train+eval s':>13} {'test AUC':>9} {'ratio':>7}")
    print(f"{'plain MONAI':<14} {peer_s:>13.1f} {peer_auc:>9.4f} {1.0:>6.2f}x")
    print(f"{'vkit':<14} {vkit_s:>13.1f} {vkit_auc:>9.4f} {vkit_s / peer_s:>6.2f}x")
    print(f"target: vkit <= 1.10x the plain loop at equal AUC -> {'met' if vkit_s / peer_s <= 1.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
