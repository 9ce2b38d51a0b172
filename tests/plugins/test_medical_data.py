"""Medical vertical data: synthetic generator, datalists, MONAI pipelines, MedicalVolumeDataset."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from vkit.plugins.medical.data import (
    MedicalVolumeDataset,
    build_transforms,
    load_datalist,
)
from vkit.plugins.medical.synthetic import generate_dataset, synthesize_volume
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import DATASETS


# ---------------------------------------------------------------- helpers
def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _dicom_series(folder: Path, vol: np.ndarray, spacing_z: float = 2.0) -> Path:
    """Write ``vol`` (slices, rows, cols) as a CT series: one file per slice, shared study/series UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(0).permutation(vol.shape[0])  # files not in slice order on purpose
    for n, z in enumerate(order):
        meta = FileMetaDataset()
        sop = generate_uid()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "ANON", int(z) + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(z) * spacing_z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], spacing_z
        ds.Rows, ds.Columns = vol.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = vol[z].astype(np.int16).tobytes()
        ds.save_as(folder / f"im{n:03d}.dcm", enforce_file_format=True)
    return folder


def _cine(path: Path, frames: int = 6, size: tuple[int, int] = (32, 24)) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for t in range(frames):
            rgb = np.zeros((size[1], size[0], 3), np.uint8)
            rgb[:, : 4 + 4 * t] = 200  # a bright band that widens over time
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


NO_AUG = dict(size=16, augment=False, intensity=dict(mode="range", a_min=0.0, a_max=100.0))


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth"), seed=3, n_train=6, n_val=2, n_test=4, size=24)


# ---------------------------------------------------------------- synthetic generator
def test_generator_writes_real_nifti_and_relative_datalist(tiny_synthetic: Path) -> None:
    doc = json.loads(tiny_synthetic.read_text())
    assert [len(doc[s]) for s in ("training", "validation", "test")] == [6, 2, 4]
    assert sorted(e["label"] for e in doc["training"]) == [0, 0, 0, 1, 1, 1]
    ids = [e["case_id"] for s in ("training", "validation", "test") for e in doc[s]]
    assert len(set(ids)) == 12
    entry = doc["test"][0]
    assert not Path(entry["image"]).is_absolute() and entry["image"].startswith("imagesTs/")
    img = nib.load(str(tiny_synthetic.parent / entry["image"]))
    assert img.shape == (24, 24, 24) and img.get_data_dtype() == np.int16
    assert np.allclose(img.header.get_zooms(), (1.5, 1.5, 1.5))
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    data = np.asarray(img.dataobj)
    assert data.min() < -800 and 0 < np.median(data[8:16, 8:16, 8:16]) < 300  # air around tissue


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """The same seed writes the same volumes; another seed other ones (caching is the lifecycle's, tested there)."""
    kw = dict(seed=1, n_train=2, n_val=2, n_test=2, size=24)
    a = generate_dataset(tmp_path / "a", **kw)
    b = generate_dataset(tmp_path / "b", **kw)
    c = generate_dataset(tmp_path / "c", **dict(kw, seed=2))
    first = json.loads(a.read_text())["training"][0]["image"]
    volume = {d: np.asarray(nib.load(str(d.parent / first)).dataobj) for d in (a, b, c)}
    assert np.array_equal(volume[a], volume[b])
    assert not np.array_equal(volume[a], volume[c])


@pytest.mark.parametrize("bad", [dict(n_train=3), dict(size=8), dict(n_val=0)])
def test_generator_rejects_bad_params(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        generate_dataset(tmp_path, **bad)


def test_label_is_in_the_shape_not_the_mean_or_a_voxel() -> None:
    from scipy.signal import fftconvolve
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    n = 160
    labels = np.arange(n) % 2
    means, centres, ring_scores, core_minus_rim = [], [], [], []
    g = np.arange(-6, 7)
    dist = np.sqrt(sum(a**2 for a in np.meshgrid(g, g, g, indexing="ij")))
    rim, core = ((dist <= 4.5) & (dist >= 2.5)).astype(float), (dist < 1.5).astype(float)
    kernel = rim / rim.sum() - core / core.sum()  # a hand-made ring detector (no knowledge of the case)
    for i, label in enumerate(labels):
        vol, info = synthesize_volume(int(label), 32, np.random.default_rng([11, i]))
        means.append(vol.mean())
        centres.append(vol[16, 16, 16])
        ring_scores.append(fftconvolve(np.clip((vol + 200) / 500, 0, 1), kernel[::-1, ::-1, ::-1], mode="valid").max())
        d = np.sqrt(sum((a - p) ** 2 for a, p in zip(np.indices(vol.shape), info.center)))
        wall = (d > info.inner_radius + 0.3) & (d < info.outer_radius - 0.3)
        core_minus_rim.append(vol[d < info.inner_radius - 0.8].mean() - vol[wall].mean())

    def cv_auc(feature: list[float]) -> float:
        x = np.asarray(feature, dtype=float)[:, None]
        x = (x - x.mean()) / x.std()
        prob = cross_val_predict(LogisticRegression(), x, labels, cv=4, method="predict_proba")[:, 1]
        return roc_auc_score(labels, prob)

    assert cv_auc(means) < 0.65
    assert cv_auc(centres) < 0.65
    assert cv_auc(ring_scores) > 0.75  # the lesion is visible to a filter that looks for rings
    core_minus_rim = np.asarray(core_minus_rim)
    assert np.mean(core_minus_rim[labels == 1] < -40) > 0.95  # rings: dark core, bright wall (oracle position)
    assert np.mean(core_minus_rim[labels == 0] > -20) > 0.95  # solid blobs: core as bright as the wall zone


# ---------------------------------------------------------------- datalists
def test_load_datalist_json_and_csv_resolve_relative_paths(tmp_path: Path) -> None:
    vol = np.zeros((4, 4, 4), np.float32)
    _nifti(tmp_path / "img" / "a.nii.gz", vol)
    _nifti(tmp_path / "img" / "b.nii", vol)
    (tmp_path / "dl.json").write_text(json.dumps({"training": [{"image": "img/a.nii.gz", "label": 1}], "test": ["img/b.nii"]}))
    assert load_datalist(tmp_path / "dl.json", "training") == [{"image": str(tmp_path / "img/a.nii.gz"), "label": 1, "case_id": "a"}]
    assert load_datalist(tmp_path / "dl.json", "predict" if False else "test", require_label=False)[0]["label"] is None
    (tmp_path / "dl.csv").write_text("image,label,split\nimg/a.nii.gz,0,train\nimg/b.nii,1.0,val\n")
    assert load_datalist(tmp_path / "dl.csv", "val") == [{"image": str(tmp_path / "img/b.nii"), "label": 1, "case_id": "b"}]
    (tmp_path / "plain.csv").write_text("image,label\nimg/a.nii.gz,1\n")
    assert load_datalist(tmp_path / "plain.csv", "anything", hash_split=False)[0]["label"] == 1  # prediction: every row
    with pytest.raises(DataError, match=r"plain.csv: no 'split' column, so rows are split 70/15/15"):
        load_datalist(tmp_path / "plain.csv", "anything")  # training: split by a stable hash (issue 21, item 4)


@pytest.mark.parametrize(
    ("name", "content", "split", "message"),
    [
        ("bad.json", "{not json", "training", r"bad.json: invalid JSON at line 1"),
        ("s.json", '{"training": [], "validation": []}', "validaton", r"no split 'validaton' \(did you mean 'validation'\?\)"),
        ("nolabel.json", '{"training": [{"image": "a.nii.gz"}]}', "training", r"nolabel.json: training\[0\]: case has no label"),
        ("missing.json", '{"training": [{"image": "gone.nii.gz", "label": 0}]}', "training", r"image file not found: .*gone.nii.gz"),
        ("seg.json", '{"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}]}', "training", r"label must be a non-negative int.*segmentation"),
        ("bad.csv", "image,label\na.nii.gz,0,extra\n", "training", r"bad.csv:2: expected 2 columns"),
        ("nohead.csv", "path,y\na.nii.gz,0\n", "training", r"nohead.csv: missing column\(s\) \['image'\]"),
        ("x.txt", "a", "training", r"unsupported suffix '.txt'"),
    ],
)
def test_load_datalist_errors_name_file_and_problem(tmp_path: Path, name: str, content: str, split: str, message: str) -> None:
    _nifti(tmp_path / "a.nii.gz", np.zeros((4, 4, 4), np.float32))
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_datalist(tmp_path / name, split)


def test_prediction_split_needs_no_label(tmp_path: Path) -> None:
    _nifti(tmp_path / "a.nii.gz", np.zeros((4, 4, 4), np.float32))
    (tmp_path / "dl.json").write_text('{"predict": ["a.nii.gz"]}')
    assert load_datalist(tmp_path / "dl.json", "predict")[0]["label"] is None
    ds = MedicalVolumeDataset(tmp_path / "dl.json", "predict", transforms=NO_AUG)
    assert ds[0]["label"] == -1 and ds[0]["case_id"] == "a"


# ---------------------------------------------------------------- transforms
def test_transforms_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"transforms.szie: unknown key \(did you mean 'size'\?\)"):
        build_transforms(dict(szie=32))
    with pytest.raises(ConfigError, match=r"transforms.size: .*got \(32, 32\)"):
        build_transforms(dict(size=(32, 32)))
    with pytest.raises(ConfigError, match=r"'percentiles', 'range'\], got 'zscore'"):
        build_transforms(dict(intensity=dict(mode="zscore")))
    with pytest.raises(ConfigError, match=r"transforms.augment.flip: unknown key \(did you mean 'flip_prob'\?\)"):
        build_transforms(dict(augment=dict(flip=0.5)))
    names = [type(t).__name__ for t in build_transforms(dict(spacing=2.0, fit="crop_pad"), train=True).transforms]
    assert names[:6] == ["LoadImaged", "EnsureChannelFirstd", "CheckVolumed", "Orientationd", "Spacingd", "ScaleIntensityRangePercentilesd"]  # "auto" unresolved
    assert {"CenterSpatialCropd", "SpatialPadd", "RandFlipd", "RandRotate90d", "RandScaleIntensityd", "RandShiftIntensityd"} <= set(names)
    assert "RandFlipd" not in [type(t).__name__ for t in build_transforms(dict(augment=False), train=True).transforms]


def test_nifti_is_reoriented_scaled_and_resized(tmp_path: Path) -> None:
    data = np.zeros((8, 8, 8), np.float32)
    data[0] = 100.0  # first voxel row along x
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # stored with x running right-to-left
    _nifti(tmp_path / "v.nii.gz", data, lps)
    out = build_transforms(dict(size=8, augment=False, intensity=dict(mode="range", a_min=0.0, a_max=100.0)))({"image": str(tmp_path / "v.nii.gz")})["image"]
    assert type(out) is torch.Tensor and out.shape == (1, 8, 8, 8) and out.dtype == torch.float32
    assert torch.allclose(out[0, -1], torch.ones(8, 8)) and out[0, :-1].abs().max() < 1e-6  # flipped to RAS, scaled to 1


# ---------------------------------------------------------------- dataset
def test_dataset_reads_synthetic_split_in_contract_shape(tiny_synthetic: Path) -> None:
    ds = DATASETS.build(dict(type="MedicalVolumeDataset", datalist=str(tiny_synthetic), split="validation", transforms=dict(size=16)))
    assert len(ds) == 2 and ds.skipped == []
    sample = ds[1]
    assert set(sample) == {"inputs", "label", "case_id", "path"}
    assert sample["path"] == ds.cases[1]["image"] and Path(sample["path"]).is_file()  # the report's thumbnail source
    vol = sample["inputs"]["volume"]
    assert type(vol) is torch.Tensor and vol.shape == (1, 16, 16, 16) and vol.dtype == torch.float32
    assert sample["label"] in (0, 1) and sample["case_id"] == json.loads(tiny_synthetic.read_text())["validation"][1]["case_id"]
    assert 0.0 <= vol.min() and vol.max() <= 1.0 and vol.std() > 0.05


def test_memory_and_persistent_caches_match_uncached(tiny_synthetic: Path, tmp_path: Path) -> None:
    plain = MedicalVolumeDataset(tiny_synthetic, "test", transforms=NO_AUG)
    mem = MedicalVolumeDataset(tiny_synthetic, "test", transforms=NO_AUG, cache="memory")
    pers = MedicalVolumeDataset(tiny_synthetic, "test", transforms=NO_AUG, cache="persistent", cache_dir=tmp_path / "pc")
    for i in range(len(plain)):
        ref = plain[i]["inputs"]["volume"]
        assert torch.equal(mem[i]["inputs"]["volume"], ref)
        assert torch.equal(pers[i]["inputs"]["volume"], ref)
    assert len(list((tmp_path / "pc").glob("*.pt"))) == len(plain)
    again = MedicalVolumeDataset(tiny_synthetic, "test", transforms=NO_AUG, cache="persistent", cache_dir=tmp_path / "pc")
    assert torch.equal(again[0]["inputs"]["volume"], plain[0]["inputs"]["volume"])  # read back (weights_only)
    with pytest.raises(ConfigError, match="cache_dir: required"):
        MedicalVolumeDataset(tiny_synthetic, "test", cache="persistent")
    with pytest.raises(ConfigError, match=r"got 'memroy' \(did you mean 'memory'\?\)"):
        MedicalVolumeDataset(tiny_synthetic, "test", cache="memroy")


def test_training_split_augments_reproducibly(tiny_synthetic: Path) -> None:
    def draws(seed: int) -> list[torch.Tensor]:
        ds = MedicalVolumeDataset(tiny_synthetic, "training", transforms=dict(size=16), cache="memory", seed=seed)
        return [ds[0]["inputs"]["volume"] for _ in range(4)]

    first = draws(0)
    assert any(not torch.equal(first[0], d) for d in first[1:])  # random flips/rotations/intensity
    assert all(torch.equal(a, b) for a, b in zip(first, draws(0)))  # same seed, same augmentations
    assert not all(torch.equal(a, b) for a, b in zip(first, draws(1)))
    val = MedicalVolumeDataset(tiny_synthetic, "validation", transforms=dict(size=16))
    assert torch.equal(val[0]["inputs"]["volume"], val[0]["inputs"]["volume"])  # no augmentation outside training


def test_dataloader_workers_do_not_repeat_augmentations(tiny_synthetic: Path) -> None:
    cases = [json.loads(tiny_synthetic.read_text())["training"][0]] * 4
    for case in cases:
        case["image"] = str(tiny_synthetic.parent / case["image"]) if not Path(case["image"]).is_absolute() else case["image"]
    ds = MedicalVolumeDataset(cases, "training", transforms=dict(size=12, augment=dict(scale_prob=1.0, shift_prob=1.0)), seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=lambda b: b)
    vols = [s["inputs"]["volume"] for batch in loader for s in batch]
    assert not torch.equal(vols[0], vols[2])  # worker 0 and worker 1 drew different augmentations


def test_dicom_series_folder_loads_in_slice_order(tmp_path: Path) -> None:
    vol = np.zeros((5, 6, 7), np.int16)  # slices, rows, cols
    for z in range(5):
        vol[z] = 10 * z
    _dicom_series(tmp_path / "ct" / "series1", vol)
    (tmp_path / "ct" / "dl.csv").write_text("image,label\nseries1,1\n")
    ds = MedicalVolumeDataset(tmp_path / "ct" / "dl.csv", "test", transforms=dict(size=(7, 6, 5), augment=False, intensity=dict(mode="range", a_min=0.0, a_max=40.0)),
                              hash_split=False)  # a CSV without split: every row, as for prediction
    sample = ds[0]
    assert sample["case_id"] == "series1" and sample["label"] == 1
    out = sample["inputs"]["volume"][0]  # RAS: (x=cols, y=rows, z=slices)
    assert out.shape == (7, 6, 5)
    assert torch.allclose(out[3, 3], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))  # superior = later slices


def test_cine_loop_frames_become_depth(tmp_path: Path) -> None:
    _cine(tmp_path / "loop.mp4", frames=6)
    (tmp_path / "dl.json").write_text('{"test": [{"image": "loop.mp4", "label": 0}]}')
    ds = MedicalVolumeDataset(
        tmp_path / "dl.json", "test",
        transforms=dict(size=(6, 24, 32), augment=False, orientation=None, fit="crop_pad", intensity=dict(mode="range", a_min=0.0, a_max=255.0)),
    )
    vol = ds[0]["inputs"]["volume"]
    assert vol.shape == (1, 6, 24, 32)  # (C, T, H, W)
    bright = (vol[0, :, 12] > 0.5).sum(dim=1)  # band width per frame
    assert bright[0] < bright[-1] and torch.all(bright[1:] >= bright[:-1])


def _bad_cases(root: Path) -> Path:
    vol = np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32)
    _nifti(root / "good.nii.gz", vol)
    _nifti(root / "flat.nii.gz", vol[:, :, 0])  # a 2-D image
    raw = gzip.compress(nib.Nifti1Image(vol, np.eye(4)).to_bytes())
    (root / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    (root / "junk.nii.gz").write_bytes(b"this is not a scan")
    cases = [
        {"image": "good.nii.gz", "label": 0}, {"image": "flat.nii.gz", "label": 1}, {"image": "trunc.nii.gz", "label": 1},
        {"image": "junk.nii.gz", "label": 0}, {"image": "gone.nii.gz", "label": 0}, {"image": "good.nii.gz"},
    ]
    (root / "dl.json").write_text(json.dumps({"training": cases}))
    return root / "dl.json"


def test_skip_bad_drops_and_reports_each_bad_case(tmp_path: Path) -> None:
    ds = MedicalVolumeDataset(_bad_cases(tmp_path), "training", transforms=NO_AUG, skip_bad=True)
    assert [c["case_id"] for c in ds.cases] == ["good"]
    reasons = {Path(s["path"]).name + ("#nolabel" if s["reason"] == "case has no label" else ""): s["reason"] for s in ds.skipped}
    assert len(ds.skipped) == 5
    assert "expected a 3-D volume, got shape (8, 8)" in reasons["flat.nii.gz"]
    assert reasons["gone.nii.gz"] == "image file not found"
    assert "good.nii.gz#nolabel" in reasons
    assert reasons["trunc.nii.gz"] and reasons["junk.nii.gz"]
    assert ds[0]["inputs"]["volume"].shape == (1, 16, 16, 16) and ds.metainfo["num_skipped"] == 5


def test_bad_files_raise_data_error_naming_the_file(tmp_path: Path) -> None:
    dl = _bad_cases(tmp_path)
    with pytest.raises(DataError, match=r"training\[4\]: image file not found: .*gone.nii.gz"):
        MedicalVolumeDataset(dl, "training", transforms=NO_AUG)
    cases = [{"image": str(tmp_path / n), "label": 0} for n in ("good.nii.gz", "flat.nii.gz", "trunc.nii.gz")]
    ds = MedicalVolumeDataset(cases, "test", transforms=NO_AUG)
    assert ds[0]["label"] == 0
    with pytest.raises(DataError, match=r"flat.nii.gz.*expected a 3-D volume, got spatial shape \(8, 8\)"):
        ds[1]
    with pytest.raises(DataError, match=r"trunc.nii.gz \(case 'trunc'"):
        ds[2]
    with pytest.raises(DataError, match=r"label 3 is out of range for num_classes=2"):
        MedicalVolumeDataset([{"image": cases[0]["image"], "label": 3}], "test", num_classes=2)


def test_truncated_cine_loop_is_a_data_error(tmp_path: Path) -> None:
    raw = _cine(tmp_path / "loop.mp4", frames=6).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(raw[: len(raw) // 3])
    ds = MedicalVolumeDataset([{"image": str(tmp_path / "cut.mp4"), "label": 1}], "test", transforms=dict(NO_AUG, orientation=None), skip_bad=True)
    assert len(ds) == 0 and ds.skipped[0]["case"] == "cut" and "cut.mp4" in ds.skipped[0]["reason"]
