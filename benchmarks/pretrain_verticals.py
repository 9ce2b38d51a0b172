"""Label efficiency of ``vkit pretrain`` on the medical (test AUC) and security (frame AUC) verticals.

Imported by ``benchmarks/pretrain.py`` (``--verticals medical security``); runnable alone with the same flags
(``python benchmarks/pretrain_verticals.py --quick``). Each row is one ``run_task`` (what ``vkit run`` calls).

**medical-diagnosis** (test ROC-AUC, the task's embedded ring-lesion volumes): :func:`med_subset` keeps
``fraction`` of the training cases' labels (stratified by class, at least one per class) in a copy of the
datalist; the other *training* volumes (never validation or test ones, which share ``imagesTr/``) are copied
to an unlabelled folder. ``vkit pretrain`` trains the task's ``TinyC3D`` volume backbone on that folder
(VICReg, MONAI ``VolumeAugment``), then three runs on the labelled cases: scratch, ``pretrained=run:ID`` +
``train.preset=linear_probe``, and + ``train.preset=finetune``. Compression is off in every run (not measured
here).

Intensity: the task feeds its network the MONAI pipeline of ``vkit.plugins.medical.data`` (``Orientationd``
RAS, then the CT window -200..300 HU to 0..1, clipped, chosen by ``choose_intensity``). The pretraining here is
``vkit pretrain --for-task medical-diagnosis`` (``PretrainOptions(for_task=...)``): each scan is decoded by the
task's own deterministic pipeline (:class:`vkit.core.ssl.decode.TaskVolumeDecoder`), the window resolved from
the unlabelled scans as the task resolves it from its training scans. A plain (z-scored) volume pretraining is
refused by the medical task (``pretrained=run:ID`` of another input mode), so it is not a row here.

**security-anomaly** (test frame ROC-AUC, the embedded surveillance clips): :func:`sec_subset` keeps
``fraction`` of the video-level labelled training videos (stratified: anomalous / normal, at least one each)
in the copy's ``Anomaly_Train.txt``; the other training videos go to the unlabelled folder (never a test
video). The task trains a MIL head on *frozen* segment features, so the rows are: scratch with the default
parameter-free ``MotionStats`` features, scratch with a randomly initialised ``TinyC3D`` as features, and
``TinyC3D`` after ``vkit pretrain`` on the unlabelled rest (``features.backbone.pretrained=run:ID``: the
frozen backbone + a trained head is the linear-probe setting). Fine-tuning does not apply (the features are
frozen and cached; the task has no way to train its backbone): printed as ``not applicable``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MED_TASK = "medical-diagnosis"
SEC_TASK = "security-anomaly"
# --quick: the task's smoke sizes (tiny volumes and network), enough cases for 3 fractions to keep both classes
MED_QUICK_DATA = dict(n_train=40, n_val=10, n_test=10, size=24)
MED_QUICK = ["data.transforms.size=(16,16,16)", "train.batch_size=4", "model.backbones.volume.widths=(4,8)",
             "model.backbones.volume.num_frames=16", "model.backbones.volume.input_size=(16,16)"]
MED_BASE = ["compression.stages=[]"]  # compression is not what this measures
SEC_QUICK_DATA = dict(num_normal=10, num_anomalous=10, test_fraction=0.4)
SEC_QUICK = ["features.num_segments=8", "features.frames_per_segment=4", "features.size=(32,32)",
             "head.hidden=(16,)", "pairs_per_video=2", "train.batch_size=4"]
#: the learned security feature backbone (frames_per_segment frames of features.size)
SEC_TINY = dict(type="TinyC3D", widths=(16, 32, 48))
SEC_TINY_QUICK = dict(type="TinyC3D", widths=(4, 8))
FINETUNE_NA = ("not applicable: security-anomaly trains a MIL head on frozen, cached backbone features; the task "
               "has no way to train the backbone, so a fine-tune row would repeat the frozen one")


def task_backbone(task: Any, key: str, overrides: Sequence[str]) -> dict[str, Any]:
    """``task``'s backbone config at dotted ``key`` (``model.backbones.volume``) after ``--set`` style
    ``overrides`` (parsed as ``vkit run`` parses them): what ``pretrained=run:ID`` must match."""
    from vkit.workflows.config import parse_value

    node: Any = task.default_config
    for part in key.split("."):
        node = node[part]
    cfg = dict(node)
    for item in overrides:
        name, _, value = item.partition("=")
        if name.startswith(key + ".") and "." not in name[len(key) + 1:]:
            cfg[name[len(key) + 1:]] = parse_value(name, value)
    return cfg


def test_metric(metrics: dict[str, float], name: str) -> float | None:
    """The test split's ``name`` metric (``test/auc``, ``test_frame_auc`` ...), ``None`` when absent."""
    for key, value in metrics.items():
        if key.startswith("test") and key.rsplit("/", 1)[-1].rsplit("test_", 1)[-1] == name:
            return float(value)
    return None


def best_val(db_url: str, run_id: int, name: str) -> float | None:
    """The best validation ``name`` of a run (the medical task keeps the best val AUC's checkpoint: that epoch's);
    what settings may be chosen by, never the test split."""
    from vkit.core.store import open_store

    values = [r["value"] for r in open_store(db_url).run_metrics(run_id, "val")
              if str(r["key"]).rsplit("/", 1)[-1] == name and r["value"] == r["value"]]
    return max(values) if values else None


def seeds(args: argparse.Namespace) -> list[int]:
    """``--seeds`` when given (benchmarks/pretrain.py), else ``--seed``."""
    return list(getattr(args, "seeds", None) or [args.seed])


def stratified_keep(labels: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Indices of ``labels`` to keep: ``max(classes, round(fraction * n))`` of them, split over the classes in
    proportion (largest remainder), at least one per class, drawn at random within each class."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r}; expected 0 < fraction < 1")
    classes = sorted(set(labels))
    n_keep = max(len(classes), round(fraction * len(labels)))
    members = {c: [i for i, y in enumerate(labels) if y == c] for c in classes}
    share = {c: n_keep * len(members[c]) / len(labels) for c in classes}
    quota = {c: max(1, int(share[c])) for c in classes}
    for c in sorted(classes, key=lambda c: share[c] - int(share[c]), reverse=True):
        if sum(quota.values()) >= n_keep:
            break
        if quota[c] < len(members[c]):
            quota[c] += 1
    while sum(quota.values()) > n_keep:  # the at-least-one rule overshot: take from the largest class
        c = max(classes, key=lambda c: quota[c])
        quota[c] -= 1
    rng = random.Random(seed)
    keep = []
    for c in classes:
        pool = list(members[c])
        rng.shuffle(pool)
        keep += pool[:quota[c]]
    return sorted(keep)


# ----------------------------------------------------------------------------- medical
def med_subset(full: Path, out: Path, fraction: float, seed: int) -> tuple[Path, Path, int, int]:
    """A copy of the data set at ``out/data`` whose datalist keeps ``fraction`` of the training labels
    (:func:`stratified_keep`) and ``out/unlabelled`` holding the other *training* volumes only.

    ``full``: the data set's ``datalist.json``. Returns (datalist, unlabelled folder, n labelled, n unlabelled).
    """
    root = out / "data"
    shutil.copytree(full.parent, root)
    datalist = root / full.name
    doc = json.loads(datalist.read_text())
    train = doc["training"]
    keep = stratified_keep([int(e["label"]) for e in train], fraction, seed)
    doc["training"] = [train[i] for i in keep]
    datalist.write_text(json.dumps(doc, indent=1))
    rest = out / "unlabelled"
    rest.mkdir()
    kept = set(keep)
    for i, entry in enumerate(train):
        if i not in kept:
            source = root / entry["image"]
            shutil.copy2(source, rest / source.name)
    return datalist, rest, len(keep), len(train) - len(keep)


def _pretrain(backbone: dict[str, Any] | None, rest: Path, folder: Path, args: argparse.Namespace, segments: int,
              epochs: int, seed: int, for_task: str | None = None,
              task_overrides: dict[str, Any] | None = None) -> tuple[Any, float, float]:
    """``vkit pretrain`` of ``backbone`` (``None`` with ``for_task``: the task's) on ``rest``; (summary, wall s,
    s per 1,000 files and epoch)."""
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    start = time.perf_counter()
    summary = pretrain(backbone, [str(rest)],
                       PretrainOptions(epochs=epochs, batch_size=args.pretrain_batch, lr=args.pretrain_lr,
                                       segments=segments, workers=args.workers, seed=seed, for_task=for_task,
                                       task_overrides=dict(task_overrides or {})),
                       db_url=f"sqlite:///{folder / 'pretrain.db'}", work_dir=folder / "pretrain")
    wall = time.perf_counter() - start
    per_1000 = summary.seconds / max(1, summary.decoded) / max(1, summary.epochs) * 1000
    return summary, wall, per_1000


def row_arguments(parser: argparse.ArgumentParser, prefix: str, vertical: str) -> None:
    """``--{prefix}-{scratch,probe,finetune}-set`` (extra ``vkit run --set`` pairs of one kind of row, e.g. its
    learning rate chosen on val; repeat the flag for variants, each a row on the same pretraining and labels)
    and ``--{prefix}-settings`` (which kinds of row run) for ``vertical``."""
    for row in ("scratch", "probe", "finetune"):
        parser.add_argument(f"--{prefix}-{row}-set", nargs="*", action="append", default=None, metavar="KEY=VALUE",
                            help=f"extra vkit run --set pairs of the {vertical} {row} rows, e.g. train.lr=0.03; "
                                 f"given twice: two variants")
    parser.add_argument(f"--{prefix}-settings", nargs="+", choices=["scratch", "linear_probe", "finetune"],
                        default=["scratch", "linear_probe", "finetune"],
                        help=f"{vertical} rows to run (scratch does not depend on the pretraining: leave it out "
                             f"when comparing pretraining variants at the same seeds)")


def row_settings(args: argparse.Namespace, prefix: str, run_id: int | None) -> list[tuple[str, list[str], int | None]]:
    """``(name, extra --set pairs, pretrain run id or None)`` of the rows ``--{prefix}-settings`` asks for, one per
    variant (a variant's pairs are in its name when there are several)."""
    kinds = [("scratch", "scratch", [], None), ("linear_probe", "probe", ["train.preset=linear_probe"], run_id),
             ("finetune", "finetune", ["train.preset=finetune"], run_id)]
    rows = []
    for kind, flag, preset, pretrained in kinds:
        if kind not in getattr(args, f"{prefix}_settings"):
            continue
        variants = getattr(args, f"{prefix}_{flag}_set") or [[]]
        name = "scratch" if kind == "scratch" else f"pretrain + {kind}"
        rows += [(f"{name} [{' '.join(v)}]" if len(variants) > 1 else name, [*preset, *v], pretrained)
                 for v in variants]
    return rows


def folder_name(setting: str) -> str:
    """A row's work folder name: its setting with anything but letters, digits, ``.`` and ``-`` as ``-``."""
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in setting)


def _mean(values: list[float | None]) -> float | None:
    import statistics

    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def seed_summary(rows: list[dict[str, Any]], metric: str) -> None:
    """Val and test ``metric`` per setting and label fraction: each seed, then val mean, test mean and spread
    (max - min) over seeds. Then the comparison chosen on val alone: the scratch setting with the best mean val,
    the pretrained setting (linear probe or fine-tune, any variant) with the best mean val, and their test means."""
    print(f"\n| labels | setting | seeds | val {metric} (each) | test {metric} (each) | val mean | test mean "
          f"| test spread |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for fraction in sorted({r["fraction"] for r in rows}):
        groups = {}
        for setting in dict.fromkeys(r["setting"] for r in rows if r["fraction"] == fraction):
            group = groups[setting] = [r for r in rows if r["fraction"] == fraction and r["setting"] == setting]
            tests = [r["value"] for r in group if r["value"] is not None]
            show = lambda key: " / ".join(fmt(r[key]) for r in group)  # noqa: E731
            spread = f"{max(tests) - min(tests):.3f}" if len(tests) > 1 else "-"
            print(f"| {fraction:.0%} ({group[0]['labelled']}) | {setting} | {', '.join(str(r['seed']) for r in group)} "
                  f"| {show('val')} | {show('value')} | {fmt(_mean([r['val'] for r in group]))} "
                  f"| {fmt(_mean(tests))} | {spread} |", flush=True)
        chosen = {}
        for kind, names in (("scratch", [s for s in groups if s.startswith("scratch")]),
                            ("pretrained", [s for s in groups if s.startswith("pretrain")])):
            by_val = [s for s in names if _mean([r["val"] for r in groups[s]]) is not None]
            if by_val:
                chosen[kind] = max(by_val, key=lambda s: _mean([r["val"] for r in groups[s]]))
        if len(chosen) == 2:
            scratch, pre = (_mean([r["value"] for r in groups[chosen[k]]]) for k in ("scratch", "pretrained"))
            gain = "-" if scratch is None or pre is None else f"{pre - scratch:+.3f}"
            print(f"{fraction:.0%}, chosen on val: scratch {chosen['scratch']!r} test {fmt(scratch)}; pretrained "
                  f"{chosen['pretrained']!r} test {fmt(pre)}; pretrained - scratch {gain}", flush=True)


def _row(vertical: str, metric: str, fraction: float, n_lab: int, setting: str, value: float | None, wall: float,
         per_1000: float | None, status: str, note: str = "", seed: int = 0, val: float | None = None) -> dict[str, Any]:
    return dict(vertical=vertical, metric=metric, fraction=fraction, labelled=n_lab, setting=setting, value=value,
                val=val, seed=seed, run_s=wall, pretrain_s_per_1000=per_1000, status=status, note=note)


def run_medical(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from vkit.plugins.medical.synthetic import generate_dataset
    from vkit.workflows.config import parse_value
    from vkit.workflows.run import run_task

    start = time.perf_counter()
    full = generate_dataset(tmp / "med-full", seed=0, **(MED_QUICK_DATA if args.quick else {}))
    print(f"medical: data generated in {time.perf_counter() - start:.1f} s ({full})", flush=True)
    base = MED_BASE + (list(MED_QUICK) if args.quick else []) + [f"train.epochs={args.epochs}"]
    # what --for-task reads: the runs' data.transforms.* and model.* keys (its backbone and its pipeline)
    task_keys = {k: parse_value(k, v) for k, _, v in (item.partition("=") for item in base)
                 if k.startswith(("data.", "model."))}
    rows = []
    for seed, fraction in ((s, f) for s in seeds(args) for f in args.fractions):
        folder = tmp / f"med-{fraction}-seed{seed}"
        folder.mkdir()
        datalist, rest, n_lab, n_rest = med_subset(full, folder, fraction, seed=seed)
        tag = f"{fraction:.0%} ({n_lab} labelled, {n_rest} unlabelled) seed {seed}"
        pretrained, per_1000 = None, None
        if args.med_settings != ["scratch"]:  # scratch alone does not need the pretraining
            summary, pre_s, per_1000 = _pretrain(None, rest, folder, args, 1, args.pretrain_epochs, seed,
                                                 for_task=MED_TASK, task_overrides=task_keys)
            print(f"medical {tag}: pretrain run {summary.run_id} {summary.objective}, {summary.decoded} volumes "
                  f"on input {summary.input!r} (the task's pipeline), {summary.epochs} epochs in {pre_s:.0f} s "
                  f"(loss {summary.loss_curve[0]:.2f} -> "
                  f"{summary.loss_curve[-1]:.2f}); load {_load()}", flush=True)
            pretrained = summary.run_id
        for name, extra, run_id in row_settings(args, "med", pretrained):
            db = f"sqlite:///{folder / 'pretrain.db'}" if run_id else f"sqlite:///{folder / 'scratch.db'}"
            overrides = base + extra + [f"seed={seed}"] + (
                [f"model.backbones.volume.pretrained=run:{run_id}"] if run_id else [])
            start = time.perf_counter()
            result = run_task(MED_TASK, overrides=overrides, data=datalist, db_url=db,
                              work_dir=folder / folder_name(name), echo=lambda *_: None)
            wall = time.perf_counter() - start
            value = test_metric(result.metrics, "auc") if result.status == "finished" else None
            val = best_val(db, result.run_id, "auc") if result.status == "finished" else None
            loaded = result.summary.get("pretrained model.backbones.volume")
            print(f"medical {tag} {name}: {result.status}, val AUC {val}, test AUC {value}, {wall:.0f} s"
                  f"{f'; loaded {loaded}' if loaded else ''}", flush=True)
            rows.append(_row("medical", "test AUC", fraction, n_lab, name, value, wall,
                             per_1000 if run_id else None, result.status, seed=seed, val=val))
        if args.med_all_labels and pretrained is not None:
            med_all_labels(full, folder, pretrained, base, seed)
    seed_summary(rows, "AUC")
    return rows


def med_all_labels(full: Path, folder: Path, run_id: int, base: list[str], seed: int) -> None:
    """Do the pretrained features hold the label at all? The task on *all* training labels (``full``): a linear
    probe of the pretrained backbone (``run_id``, in ``folder``'s store), of a random one, and scratch training;
    test AUC each (printed, not rows: they use labels the fraction's rows do not have)."""
    from vkit.workflows.run import run_task

    db = f"sqlite:///{folder / 'pretrain.db'}"
    for name, extra in (("pretrained linear_probe", ["train.preset=linear_probe",
                                                     f"model.backbones.volume.pretrained=run:{run_id}"]),
                        ("random-init linear_probe", ["train.preset=linear_probe"]), ("scratch", [])):
        result = run_task(MED_TASK, overrides=[*base, *extra, f"seed={seed}"], data=full, db_url=db,
                          work_dir=folder / f"all-labels-{folder_name(name)}", echo=lambda *_: None)
        value = test_metric(result.metrics, "auc") if result.status == "finished" else None
        print(f"medical all training labels, seed {seed}, {name}: {result.status}, test AUC {value}", flush=True)


# ----------------------------------------------------------------------------- security
def sec_subset(full: Path, out: Path, fraction: float, seed: int) -> tuple[Path, Path, int, int]:
    """A copy of the UCF-Crime-style folder ``full`` at ``out/data`` whose ``Anomaly_Train.txt`` keeps
    ``fraction`` of the training videos (stratified anomalous / normal), and ``out/unlabelled`` holding the
    other *training* videos only. Returns (root, unlabelled folder, n labelled, n unlabelled)."""
    from vkit.plugins.security.data import AnomalyVideoDataset
    from vkit.plugins.security.synthetic import TRAIN_LIST

    root = out / "data"
    shutil.copytree(full, root)
    train = AnomalyVideoDataset(root, "train").records
    keep = stratified_keep([r.label for r in train], fraction, seed)
    lines = [os.path.relpath(train[i].path, root) for i in keep]
    (root / TRAIN_LIST).write_text("".join(line + "\n" for line in lines))
    rest = out / "unlabelled"
    rest.mkdir()
    kept = set(keep)
    for i, record in enumerate(train):
        if i not in kept:
            shutil.copy2(record.path, rest / record.name)
    return root, rest, len(keep), len(train) - len(keep)


def run_security(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from vkit.plugins.security.synthetic import generate
    from vkit.plugins.security.task import SecurityAnomalyTask
    from vkit.workflows.run import run_task

    start = time.perf_counter()
    full = generate(tmp / "sec-full", seed=0, **(SEC_QUICK_DATA if args.quick else {})).parent
    print(f"security: data generated in {time.perf_counter() - start:.1f} s ({full})", flush=True)
    base = (list(SEC_QUICK) if args.quick else []) + [f"train.epochs={args.sec_epochs}"]
    feats = task_backbone(SecurityAnomalyTask, "features", base)  # the features section (size, frames ...)
    size = tuple(feats["size"])
    tiny = dict(SEC_TINY_QUICK if args.quick else SEC_TINY, num_frames=int(feats["frames_per_segment"]),
                input_size=size)
    rows = []
    for seed, fraction in ((s, f) for s in seeds(args) for f in args.fractions):
        folder = tmp / f"sec-{fraction}-seed{seed}"
        folder.mkdir()
        root, rest, n_lab, n_rest = sec_subset(full, folder, fraction, seed=seed)
        tag = f"{fraction:.0%} ({n_lab} labelled, {n_rest} unlabelled) seed {seed}"
        summary, pre_s, per_1000 = _pretrain(tiny, rest, folder, args, args.sec_segments, args.sec_pretrain_epochs,
                                             seed)
        print(f"security {tag}: pretrain run {summary.run_id} {summary.objective}, {summary.decoded} videos x "
              f"{args.sec_segments} clips, {summary.epochs} epochs in {pre_s:.0f} s (loss "
              f"{summary.loss_curve[0]:.2f} -> {summary.loss_curve[-1]:.2f}); load {_load()}", flush=True)
        settings = [("scratch (MotionStats, default)", None, None),
                    ("scratch (TinyC3D, random init)", dict(tiny), None),
                    ("pretrain TinyC3D, frozen (linear probe)", dict(tiny, pretrained=f"run:{summary.run_id}"),
                     summary.run_id)]
        for name, backbone, run_id in settings:
            db = f"sqlite:///{folder / 'pretrain.db'}" if run_id else f"sqlite:///{folder / 'scratch.db'}"
            overrides = base + [f"seed={seed}", f"features.cache_dir={folder / 'features'}"]
            if backbone is not None:
                overrides.append(f"features.backbone={json.dumps(backbone)}")  # flow syntax: JSON, tuples as lists
            start = time.perf_counter()
            result = run_task(SEC_TASK, overrides=overrides, data=root, db_url=db,
                              work_dir=folder / "".join(c for c in name if c.isalnum()), echo=lambda *_: None)
            wall = time.perf_counter() - start
            value = test_metric(result.metrics, "frame_auc") if result.status == "finished" else None
            print(f"security {tag} {name}: {result.status}, test frame AUC {value}, {wall:.0f} s", flush=True)
            rows.append(_row("security", "test frame AUC", fraction, n_lab, name, value, wall,
                             per_1000 if run_id else None, result.status, seed=seed))
        rows.append(_row("security", "test frame AUC", fraction, n_lab, "pretrain + finetune", None, 0.0, None,
                         "not applicable", FINETUNE_NA if seed == seeds(args)[0] else "", seed=seed))
    return rows


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


RUNNERS = dict(medical=run_medical, security=run_security)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This module's flags (``benchmarks/pretrain.py`` adds them to its own)."""
    parser.add_argument("--sec-epochs", type=int, default=20, help="MIL head epochs (the task's default 20)")
    parser.add_argument("--sec-pretrain-epochs", type=int, default=30)
    parser.add_argument("--sec-segments", type=int, default=4, help="clips decoded per unlabelled video")
    row_arguments(parser, "med", "medical")
    parser.add_argument("--med-all-labels", action="store_true",
                        help="after each medical pretraining: a linear probe of it, of a random backbone, and scratch "
                             "on all training labels (do the pretrained features hold the label at all?)")


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pretrain as bench  # benchmarks/pretrain.py: the same flags, table and CPU line

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--verticals" not in argv:
        argv = ["--verticals", "medical", "security", *argv]
    return bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
