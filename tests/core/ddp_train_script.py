"""Helper for test_engine_distributed.py (not a test): trains TinyC3D with vkit's engine, prints the step count.

    torchrun --nproc_per_node 2 ddp_train_script.py OUT.json GLOBAL_BATCH
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import torch

from vkit.core.engine import build_runner
from vkit.core.model import build_model


class Blobs(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 4, 8, 8, generator=g)
        self.y = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=dict(volume=self.x[i]), label=int(self.y[i]), case_id=f"c{i}")


def main() -> None:
    out, global_batch = sys.argv[1], int(sys.argv[2])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model = build_model(dict(backbones=dict(volume=dict(type="TinyC3D", widths=(4, 8), in_channels=1, modality="volume")),
                             head=dict(type="ClsHead", num_classes=2)))
    runner = build_runner(model, work_dir=tempfile.mkdtemp(), train_set=Blobs(48), checkpoint=False,
                          train=dict(epochs=2, batch_size=global_batch // world, launcher="pytorch" if world > 1 else "none"))
    runner.train()
    if int(os.environ.get("RANK", "0")) == 0:
        with open(out, "w") as fh:
            json.dump(dict(iters=runner.iter, world=runner.world_size,
                           samples_seen=runner.iter * (global_batch // world) * world), fh)


if __name__ == "__main__":
    main()
