"""Fault matrix of issue 21, data tables (``vkit.core.datalist``), through the installed ``vkit`` command.

- item 4: a medical CSV without ``split`` is split 70/15/15 by a stable hash (disjoint splits, the summary says
  so) and a bad case is recorded once, not once per split;
- item 11: every vertical reads tables through one reader: a BOM is not part of the first column, and a path
  whose real path leaves the data folder (``..``, absolute, a symlink out) is refused naming the file, the row
  and the path, unless ``VKIT_DATALIST_ALLOW_OUTSIDE=1``; a ``--users`` file with a BOM reads ``u0001``;
- item 17: the medical intensity window comes from the data: 0..1000 data is not saturated by a CT window,
  and the run summary names the window and why.

These items are about how tables and scans are read, not about the store: one SQLite store holds the runs.
"""
from __future__ import annotations

import codecs
import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

from vkit.core.datalist import ALLOW_OUTSIDE_ENV, stable_split
from vkit.core.store import open_store

MEDICAL_TINY = ["train.epochs=1", "train.batch_size=4", "data.transforms.size=(16,16,16)",
                "model.backbones.volume.widths=(4,8)", "model.backbones.volume.num_frames=16",
                "model.backbones.volume.input_size=(16,16)", "compression.stages=[]"]
REC_TINY = ["train.epochs=1", "compare.models=[]", "model.dim=8", "model.hidden=8", "model.num_negatives=4"]


def vkit(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return vkit_cli.vkit(*args, cwd=cwd, check=check, env=dict(VKIT_DISABLE_PLUGINS="demo", **(env or {})),
                         drop=(ALLOW_OUTSIDE_ENV,))


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def flat(text: str) -> str:
    """Terminal output with its line wrapping and table borders folded away."""
    return " ".join(text.replace("│", " ").split())


def write_bom(path: Path, text: str) -> Path:
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    return path


@pytest.fixture(scope="module")
def module_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store shared by the module's runs: what is checked here is how tables are read (the store only
    records the rows; the store's own faults are matrixed on SQLite and PostgreSQL in the other files)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'vkit.db'}"


# ---------------------------------------------------------------------- medical data
def _volume(path: Path, label: int, rng: np.random.Generator) -> Path:
    """A 16^3 scan in 0..1000 (not Hounsfield units): 0 background, a 200..1000 body, a bright cube if positive."""
    vol = np.zeros((16, 16, 16), np.float32)
    vol[3:13, 3:13, 3:13] = rng.uniform(200, 1000, (10, 10, 10))
    if label:
        vol[6:10, 6:10, 6:10] = 1000.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path


def _case_ids() -> list[str]:
    """Case ids whose stable hash gives every split at least 4 cases (2 per class)."""
    chosen: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for k in range(400):
        case = f"case{k:03d}"
        bucket = chosen[stable_split(case)]
        if len(bucket) < (10 if stable_split(case) == "train" else 4):
            bucket.append(case)
    return [c for cases in chosen.values() for c in cases]


def medical_data(root: Path) -> dict:
    """``root/data/list.csv`` (BOM, no split column) over 0..1000 scans, one missing file, one outside (allowed) scan."""
    rng = np.random.default_rng(0)
    cases = _case_ids()
    labels = {c: i % 2 for i, c in enumerate(cases)}
    lines = ["image,label"] + [f"img/{c}.nii.gz,{labels[c]}" for c in cases]
    outside = next(f"extra{k}" for k in range(100) if stable_split(f"extra{k}") == "train")
    _volume(root / "outside" / f"{outside}.nii.gz", 1, rng)
    gone = next(f"gone{k}" for k in range(100) if stable_split(f"gone{k}") == "test")
    lines += [f"../outside/{outside}.nii.gz,1", f"img/{gone}.nii.gz,0"]
    for case in cases:
        _volume(root / "data" / "img" / f"{case}.nii.gz", labels[case], rng)
    return dict(csv=write_bom(root / "data" / "list.csv", "\n".join(lines) + "\n"), cases=cases + [outside],
                gone=gone, outside=outside)


@pytest.fixture(scope="module")
def medical_run(module_store: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny run on a BOM CSV without split (outside paths allowed for it), ``--skip-bad``."""
    url = module_store
    tmp = tmp_path_factory.mktemp("medical")
    data = medical_data(tmp)
    proc = vkit("--db", url, "run", "medical-diagnosis", "--datalist", str(data["csv"]), "--skip-bad", *sets(MEDICAL_TINY),
                "--work-dir", str(tmp / "work"), cwd=tmp, env={ALLOW_OUTSIDE_ENV: "1"})
    store = open_store(url, read_only=True)
    run = next(r for r in store.list_runs(task="medical-diagnosis") if r["kind"] == "train")
    return dict(data, url=url, tmp=tmp, out=flat(proc.stdout), run=run, store=store,
                meta=json.loads((tmp / "work" / "model.json").read_text()))


def test_item4_medical_csv_without_split_gets_disjoint_hashed_splits(medical_run: dict) -> None:
    out = medical_run["out"]
    assert "list.csv has no 'split' column" in out and "split 70/15/15 into training/validation/test by a stable hash" in out
    test_ids = {row["item_id"] for row in medical_run["store"].run_predictions(medical_run["run"]["id"], "test")}
    expected = {c for c in medical_run["cases"] if stable_split(c) == "test"}
    assert test_ids == expected  # only the test split's cases: no training case is scored as a test case
    counts = {s: sum(stable_split(c) == s for c in medical_run["cases"]) for s in ("train", "val", "test")}
    assert f"{counts['train']} train / {counts['val']} val / {counts['test']} test" in out


def test_item4_a_bad_case_is_counted_once(medical_run: dict) -> None:
    skipped = medical_run["store"].run_predictions(medical_run["run"]["id"], "skipped")
    assert [row["item_id"] for row in skipped] == [f"test/{medical_run['gone']}"]  # once, in its own split
    assert "image file not found" in skipped[0]["values"]["reason"]


def test_item11_medical_bom_csv_and_an_allowed_outside_path_are_read(medical_run: dict) -> None:
    assert medical_run["run"]["status"] == "finished"
    assert stable_split(medical_run["outside"]) == "train"  # read (allowed), not skipped
    skipped = medical_run["store"].run_predictions(medical_run["run"]["id"], "skipped")
    assert all(medical_run["outside"] not in row["item_id"] for row in skipped)


def test_item17_window_from_the_data_named_in_the_summary_and_saved(medical_run: dict) -> None:
    out = medical_run["out"]
    assert "intensity per-scan percentiles 0.5..99.5 to 0..1 (MONAI ScaleIntensityRangePercentilesd)" in out
    assert "are not Hounsfield units" in out
    intensity = medical_run["meta"]["config"]["data"]["transforms"]["intensity"]
    assert intensity["mode"] == "percentiles" and (intensity["lower"], intensity["upper"]) == (0.5, 99.5)


def test_item17_0_to_1000_data_is_not_saturated(tmp_path: Path) -> None:
    from vkit.plugins.medical.data import CT_WINDOW, MedicalVolumeDataset

    _volume(tmp_path / "scan.nii.gz", 0, np.random.default_rng(1))  # 0 background, a 200..1000 body
    (tmp_path / "list.json").write_text(json.dumps({"test": [dict(image="scan.nii.gz", label=0)]}))

    def volume(**intensity: object) -> np.ndarray:
        transforms = dict(size=16, augment=False, **(dict(intensity=intensity) if intensity else {}))
        ds = MedicalVolumeDataset(tmp_path / "list.json", "test", transforms=transforms)
        return ds, ds[0]["inputs"]["volume"].numpy()

    ds, vol = volume()
    assert ds.intensity["mode"] == "percentiles" and "ScaleIntensityRangePercentilesd" in ds.intensity_source
    assert float((vol >= 0.999).mean()) <= 0.01  # at most the top 0.5 % of the scan's voxels at 1.0
    assert float(vol[0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-6)  # background maps to 0
    _, old = volume(**CT_WINDOW)  # what the fixed CT window did to the same scan
    assert float((old >= 0.999).mean()) > 0.15 and float(old[0, 0, 0, 0]) == pytest.approx(0.4)


def test_item17_hounsfield_data_keeps_the_ct_window(tmp_path: Path) -> None:
    from vkit.plugins.medical.data import CT_WINDOW, MedicalVolumeDataset
    from vkit.plugins.medical.synthetic import generate_dataset

    datalist = generate_dataset(tmp_path, n_train=2, n_val=2, n_test=2, size=24)
    ds = MedicalVolumeDataset(datalist, "training", transforms=dict(size=16))
    assert ds.intensity == CT_WINDOW and "values reach air" in ds.intensity_source  # the embedded data: unchanged


# ---------------------------------------------------------------------- item 11: refusals, each vertical
def _outside_variants(root: Path, target: Path) -> dict[str, str]:
    """The three ways out of ``root``: ``..``, an absolute path, a symlink inside pointing outside."""
    (root / "link.bin").symlink_to(target)
    return {"dotdot": os.path.relpath(target, root), "absolute": str(target), "symlink": "link.bin"}


def test_item11_medical_symlink_out_refused_by_vkit_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = tmp_path / "data"
    _volume(data / "a.nii.gz", 0, rng)
    secret = _volume(tmp_path / "secret" / "scan.nii.gz", 1, rng)
    (data / "scan.nii.gz").symlink_to(secret)
    csv = write_bom(data / "list.csv", "image,label,split\na.nii.gz,0,training\nscan.nii.gz,1,training\n")
    proc = vkit("run", "medical-diagnosis", "--datalist", str(csv), *sets(MEDICAL_TINY), "--work-dir", str(tmp_path / "w"),
                cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert f"{csv}:3: image 'scan.nii.gz' is outside the datalist's folder {data}; refused: it resolves to {secret}" \
        in flat(proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_item11_medical_reader_refuses_each_way_out(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vkit.plugins.medical.data import load_datalist
    from vkit.registry.errors import DataError

    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)
    secret = _volume(tmp_path / "secret" / "scan.nii.gz", 1, np.random.default_rng(3))
    (tmp_path / "data").mkdir()
    value = _outside_variants(tmp_path / "data", secret)[kind]
    csv = write_bom(tmp_path / "data" / "list.csv", f"image,label\n{value},1\n")
    with pytest.raises(DataError, match=rf"list.csv:2: image '{value}' is outside the datalist's folder"):
        load_datalist(csv, "training", hash_split=False)
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "1")
    assert load_datalist(csv, "training", hash_split=False)[0]["image"] == str(secret)


def test_item11_education_csv_path_out_refused_by_vkit_run(tmp_path: Path) -> None:
    (tmp_path / "secret.mp4").write_bytes(b"not read")
    (tmp_path / "data").mkdir()
    csv = write_bom(tmp_path / "data" / "clips.csv", "path,level,split\n../secret.mp4,2,train\n")
    proc = vkit("run", "education-engagement", "--data", str(csv), "--work-dir", str(tmp_path / "w"), cwd=tmp_path,
                check=False)
    assert proc.returncode != 0
    assert f"{csv}:2: path '../secret.mp4' is outside the datalist's folder {tmp_path / 'data'}; refused" in flat(proc.stderr)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_item11_education_reader_refuses_each_way_out(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vkit.plugins.education.data import read_csv
    from vkit.registry.errors import DataError

    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)
    (tmp_path / "secret.mp4").write_bytes(b"s")
    (tmp_path / "data").mkdir()
    value = _outside_variants(tmp_path / "data", tmp_path / "secret.mp4")[kind]
    csv = write_bom(tmp_path / "data" / "clips.csv", f"path,level\nok.mp4,1\n{value},2\n")
    with pytest.raises(DataError, match=rf"clips.csv:3: path '{value}' is outside the datalist's folder"):
        read_csv(csv)
    skipped: list[dict] = []
    assert [c.clip_id for c in read_csv(csv, skip_bad=True, skipped=skipped)] == ["ok"]  # --skip-bad: row recorded
    assert skipped[0]["item_id"] == value and f"clips.csv:3: path '{value}'" in skipped[0]["reason"]
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "1")
    assert read_csv(csv)[1].path == tmp_path / "secret.mp4"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_item11_recommendation_items_csv_refuses_each_way_out(tmp_path: Path, kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vkit.plugins.recommendation.data import read_items_csv

    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)
    (tmp_path / "secret.mp4").write_bytes(b"s")
    (tmp_path / "data").mkdir()
    value = _outside_variants(tmp_path / "data", tmp_path / "secret.mp4")[kind]
    items = write_bom(tmp_path / "data" / "items.csv", f"item_id,video\nv1,{value}\n")
    ids, videos, problems = read_items_csv(items)
    assert ids == ["v1"] and videos == {"v1": None}  # kept in the catalogue, its video never read
    assert problems[0]["item_id"] == "items.csv:2" and f"video '{value}' is outside the datalist's folder" in problems[0]["reason"]
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "1")
    assert read_items_csv(items)[1] == {"v1": str(tmp_path / "secret.mp4")}


@pytest.fixture(scope="module")
def recommendation_run(module_store: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run on BOM CSVs whose items.csv points one video outside the data folder, then a BOM ``--users`` batch."""
    from vkit.plugins.recommendation.synthetic import generate

    url = module_store
    tmp = tmp_path_factory.mktemp("rec")
    items = generate(tmp / "data", seed=0, n_users=30, n_items=18, n_new=6, history=(3, 6))
    (tmp / "outside").mkdir()
    shutil.move(tmp / "data" / "videos" / "v0001.mp4", tmp / "outside" / "v0001.mp4")
    lines = items.read_text().splitlines()
    lines[2] = lines[2].replace("videos/v0001.mp4", "../outside/v0001.mp4")
    write_bom(items, "\n".join(lines) + "\n")
    inter = tmp / "data" / "interactions.csv"
    write_bom(inter, inter.read_text())
    run = vkit("--db", url, "run", "recommendation", "--data", str(tmp / "data"), *sets(REC_TINY),
               "--work-dir", str(tmp / "work"), cwd=tmp)
    store = open_store(url, read_only=True)
    run_id = next(r["id"] for r in store.list_runs(task="recommendation") if r["kind"] == "train")
    write_bom(tmp / "users.txt", "u0001\nu0002\n")
    rec = vkit("--db", url, "recommend", "--run", str(run_id), "--users", str(tmp / "users.txt"), "-k", "3", "--json",
               cwd=tmp)
    return dict(url=url, tmp=tmp, run_id=run_id, out=flat(run.stdout), recommend=json.loads(rec.stdout))


def test_item11_recommendation_outside_video_refused_and_never_read(recommendation_run: dict) -> None:
    store = open_store(recommendation_run["url"], read_only=True)
    skipped = {r["item_id"]: r["values"] for r in store.run_predictions(recommendation_run["run_id"], "skipped")}
    row = skipped["items.csv:3"]  # the BOM did not hide the header: the rows are read, this one refused
    outside = recommendation_run["tmp"] / "outside" / "v0001.mp4"
    assert f"video '../outside/v0001.mp4' is outside the datalist's folder" in row["reason"]
    assert f"resolves to {outside}" in row["reason"]
    assert all("outside" not in v["path"] for v in store.get_videos())  # never hashed, decoded or thumbnailed


def test_item11_users_file_with_a_bom_reads_u0001(recommendation_run: dict) -> None:
    users = [r["user"] for r in recommendation_run["recommend"]["recommendations"]]
    assert users == ["u0001", "u0002"]
    assert all(r["known"] for r in recommendation_run["recommend"]["recommendations"])
    store = open_store(recommendation_run["url"], read_only=True)
    rows = store.run_predictions(recommendation_run["recommend"]["run_id"], "recommend")
    assert sorted(r["item_id"] for r in rows) == ["u0001", "u0002"]


def test_item11_security_annotations_with_a_bom_name_the_first_video(tmp_path: Path) -> None:
    from vkit.plugins.security.annotations import read_annotations

    notes = read_annotations(write_bom(tmp_path / "Temporal_Anomaly_Annotation.txt",
                                       "Arrest001_x264.mp4  Arrest  30  160  -1  -1\nNormal_1.mp4  Normal  -1  -1  -1  -1\n"))
    assert list(notes) == ["Arrest001_x264.mp4", "Normal_1.mp4"]  # not '\ufeffArrest001_x264.mp4'
    assert notes["Arrest001_x264.mp4"].intervals == ((30, 160),)
