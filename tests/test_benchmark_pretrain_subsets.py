"""benchmarks/pretrain_verticals.py's label subsets keep exactly the requested share of training labels, and the
unlabelled folder that ``vkit pretrain`` reads holds only the *other training* files: no labelled, validation or
test scan / video (by content hash, not just by name)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_pretrain_verticals", ROOT / "benchmarks" / "pretrain_verticals.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("labels", "fraction", "expected"), [
    ([0] * 100 + [1] * 100, 0.10, {0: 10, 1: 10}),
    ([0] * 30 + [1] * 30, 0.05, {0: 2, 1: 1}),  # round(3.0) = 3 labels, largest remainder, both classes kept
    ([0] * 90 + [1] * 10, 0.05, {0: 4, 1: 1}),  # the rare class keeps at least one
    ([0] * 6 + [1] * 6, 0.01, {0: 1, 1: 1}),   # never fewer than one per class
    ([0] * 50 + [1] * 30 + [2] * 20, 0.25, {0: 13, 1: 7, 2: 5}),  # remainders tie (.5, .5): the first class
])
def test_stratified_keep_counts(labels: list[int], fraction: float, expected: dict[int, int]) -> None:
    keep = bench.stratified_keep(labels, fraction, seed=3)
    assert len(keep) == len(set(keep)) == max(len(set(labels)), round(fraction * len(labels)))
    assert dict(Counter(labels[i] for i in keep)) == expected
    assert keep == bench.stratified_keep(labels, fraction, seed=3)  # deterministic from the seed
    assert keep != bench.stratified_keep(labels, fraction, seed=4) or len(keep) == len(set(labels))


def test_stratified_keep_refuses_a_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction=1.0"):
        bench.stratified_keep([0, 1], 1.0, seed=0)


def test_medical_subset_keeps_the_share_and_leaks_nothing(tmp_path: Path) -> None:
    from vkit.plugins.medical.data import load_datalist
    from vkit.plugins.medical.synthetic import generate_dataset

    full = generate_dataset(tmp_path / "full", seed=0, n_train=20, n_val=4, n_test=4, size=24)
    datalist, rest, n_lab, n_rest = bench.med_subset(full, tmp_path / "sub", 0.25, seed=1)
    whole = json.loads(full.read_text())
    doc = json.loads(datalist.read_text())
    assert (n_lab, n_rest) == (5, 15) and len(doc["training"]) == 5
    assert {e["label"] for e in doc["training"]} == {0, 1}
    assert doc["validation"] == whole["validation"] and doc["test"] == whole["test"]
    assert len(load_datalist(datalist, "training")) == 5  # the run reads exactly the kept cases
    unlabelled = {sha(p) for p in rest.iterdir()}
    assert len(unlabelled) == len(list(rest.iterdir())) == 15
    labelled = {sha(full.parent / e["image"]) for e in doc["training"]}
    held_out = {sha(full.parent / e["image"]) for s in ("validation", "test") for e in whole[s]}
    assert not unlabelled & labelled and not unlabelled & held_out
    assert unlabelled | labelled == {sha(full.parent / e["image"]) for e in whole["training"]}


def test_security_subset_keeps_the_share_and_leaks_nothing(tmp_path: Path) -> None:
    from vkit.plugins.security.data import AnomalyVideoDataset
    from vkit.plugins.security.synthetic import generate

    full = generate(tmp_path / "full", seed=0, num_normal=5, num_anomalous=5, test_fraction=0.4).parent
    root, rest, n_lab, n_rest = bench.sec_subset(full, tmp_path / "sub", 0.34, seed=0)
    train = AnomalyVideoDataset(root, "train").records
    test = AnomalyVideoDataset(root, "test").records
    assert (n_lab, n_rest) == (2, 4) and len(train) == 2 and {r.label for r in train} == {0, 1}
    assert [r.name for r in test] == [r.name for r in AnomalyVideoDataset(full, "test").records]
    unlabelled = {sha(p) for p in rest.iterdir()}
    assert len(unlabelled) == 4
    assert not unlabelled & {sha(Path(r.path)) for r in train + test}
    assert unlabelled | {sha(Path(r.path)) for r in train} == {
        sha(Path(r.path)) for r in AnomalyVideoDataset(full, "train").records}
