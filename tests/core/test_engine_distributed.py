"""Multi-process training through mmengine's launcher under torchrun (gloo on CPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one_with_the_global_batch_kept(tmp_path):
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run([sys.executable, str(SCRIPT), str(single), "8"], check=True, timeout=300, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(SCRIPT), str(double), "8"], timeout=300, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert one["world"] == 1 and two["world"] == 2
    assert one["iters"] == two["iters"] == 2 * 48 // 8
    assert one["samples_seen"] == two["samples_seen"] == 2 * 48
