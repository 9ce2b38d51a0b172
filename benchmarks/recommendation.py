"""``recommendation``: the model table (train times, full-ranking quality) and exact top-K throughput.

Three parts, each measured in this one process (CPU model and flags printed):

1. **models**: the task's default data set (the embedded generator, default
   params) read through ``RecommendationTask.datasets``; Popularity, BPR-MF,
   VBPR and two-tower built with the task's default configs (the comparison
   models' ``train`` overrides included), plus the two-tower model with the
   items' metadata (title, tags, duration) fused with the content
   (``fusion=dict(type='GatedAttention')``), trained one after the other with
   :func:`vkit.core.lifecycle.fit` (the Runner the run uses; best epoch by
   validation ``ndcg@10``), then evaluated by exact full ranking over every
   item and on the cold-start slice. Train wall and CPU seconds per model.
   Checks: the content models beat BPR-MF on cold-start Recall@10 by >= 20%
   relative and are not worse overall.
   **peers** (same data, split and evaluator): vkit's BPR-MF and VBPR (the
   task's comparison settings) against cornac's ``BPR`` and ``VBPR`` (same
   latent sizes; cornac's learning rate, regularisation and epochs are the
   best Recall@10 of a grid on this data, which favours the peer), each
   trained with ``--seeds`` (0 and 1); ``cornac BPR plain`` is cornac's BPR at
   a budget like vkit's (100 epochs, its default ``lambda_reg``). All ranked by the same
   :func:`~vkit.plugins.recommendation.evaluator.evaluate_model` (cornac's
   user/item vectors are dot-product vectors, item bias included). Needs
   ``pip install 'vkit[bench]'`` (cornac); without it the cornac rows say so.
   **encoders** (``--skip-encoders`` leaves it out): the item encoder the
   content models stand on, judged by a linear probe of the hidden genre
   (``truth.json``; logistic regression on standardised features, fit on the
   240 catalogue videos, accuracy on the 60 new ones, which no encoder saw):
   the default ``ClipStats``; ``TinyC3D`` and a small ``TimeSformer`` at random
   initialisation and after ``vkit pretrain`` on the catalogue videos
   (:func:`vkit.workflows.pretrain.pretrain`, ``--pretrain-epochs``; VICReg,
   and for the TimeSformer also the masked autoencoder), each loaded as
   ``pretrained='run:ID'`` (:mod:`vkit.core.weights.run_ref`). Then the
   two-tower model trained on the ``ClipStats`` content and on the best
   pretrained encoder's content (``content.backbone`` with
   ``pretrained='run:ID'``): overall and cold-start Recall@10.
2. **vkit run**: ``vkit run recommendation`` with the default config in a
   subprocess, wall and CPU seconds (target: under 5 minutes on 2 cores).
3. **top-K**: exact top-10 over ``--items`` (100,000) items for ``--users``
   (10,000) users with ``--seen`` (50) training items per user excluded,
   ``--dim`` (64) float32 vectors: vkit's chunked ranking
   (:func:`vkit.plugins.recommendation.ranking.topk_items`: ``(chunk, d) @ (d, N)``
   products, a scatter of ``-inf`` over seen items, ``torch.topk`` per chunk)
   against the plain peer: one ``(U, N)`` score matrix, the same scatter, one
   ``torch.topk``. Users/s and peak extra memory of each; the results must be identical.

    python benchmarks/recommendation.py                  # all three parts
    python benchmarks/recommendation.py --model-threads 1   # small models on a busy machine: one thread each
    python benchmarks/recommendation.py --skip-run --users 2000 --items 20000   # quick
    python benchmarks/recommendation.py --skip-models --skip-run --skip-topk --model-threads 1   # the peers only
    python benchmarks/recommendation.py --skip-models --skip-peers --skip-run --skip-topk --model-threads 1  # encoders
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def cpu_info() -> str:
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), model)
        have = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have]
    except OSError:
        pass
    return (f"CPU: {model}; {os.cpu_count()} cores; flags: {' '.join(flags) or 'none of avx2/avx512/amx'}; "
            f"torch {torch.__version__}, threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")


def _cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


# ---------------------------------------------------------------------- part 1
def load_data(tmp: Path, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """The task's default data set read through ``RecommendationTask.datasets``: ``cfg``, ``datasets``, the store
    (``content``: overrides of the ``content`` section, e.g. a pretrained item encoder)."""
    from mmengine.config import Config

    from vkit.core.lifecycle import prepare_data
    from vkit.core.store import open_store
    from vkit.core.task import RunContext
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.recommendation.task import RecommendationTask

    get_plugin_manager().register_components()
    task = RecommendationTask()
    cfg = Config(task.default_config)
    if content:
        cfg.content.update(content)
    store = open_store(f"sqlite:///{tmp / 'bench.db'}")
    run_id = store.start_run(task=task.name, plugin="recommendation", config=cfg.to_dict(), seed=0)
    ctx = RunContext(store, run_id, tmp / "work", tmp / "data", echo=lambda *_: None)
    ctx.data = prepare_data(task, cfg, ctx)
    start = time.perf_counter()
    datasets = task.datasets(cfg, ctx)
    print(f"data: {ctx.summary['interactions']}; generated + embedded + read in {time.perf_counter() - start:.1f} s")
    return dict(cfg=cfg, datasets=datasets, store=store, run_id=run_id, tmp=tmp)


def train_vkit(label: str, model_cfg: dict, data: dict[str, Any], seed: int = 0) -> tuple[Any, float, float, int]:
    """``model_cfg`` built and trained as the run trains it (its ``train`` overrides, best validation epoch):
    ``(model, wall s, CPU s, epochs)``."""
    from mmengine.runner import set_random_seed

    from vkit.core.lifecycle import fit
    from vkit.core.task import RunContext
    from vkit.plugins.recommendation.metric import RankingMetric
    from vkit.plugins.recommendation.models import build_recommender

    cfg, datasets, tmp = data["cfg"], data["datasets"], data["tmp"]
    model_cfg = dict(model_cfg)
    train = dict(cfg.train, **dict(model_cfg.pop("train", None) or {}))
    set_random_seed(seed)
    model = build_recommender(model_cfg, datasets)
    wall, cpu = time.perf_counter(), _cpu_s()
    if model.trainable:
        quiet = RunContext(data["store"], data["run_id"], tmp / "work" / f"{label}-{seed}", tmp / "data",
                           echo=lambda *_: None)
        quiet.store = None
        model = fit(model, datasets["train"], datasets["val"], dict(cfg, seed=seed, train=train), quiet,
                    val_metrics=[RankingMetric(ks=(10, 20))], checkpoint=dict(cfg.checkpoint))
    return model, time.perf_counter() - wall, _cpu_s() - cpu, train["epochs"] if model.trainable else 0


def models_part(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    from vkit.plugins.recommendation.evaluator import comparison_configs, evaluate_model

    cfg, datasets = data["cfg"], data["datasets"]
    configs = [(c["type"], c) for c in comparison_configs(cfg)] + [(cfg.model["type"], dict(cfg.model))]
    if datasets.get("metadata") is not None:  # the two-tower model with title/tags/duration fused with the content
        configs.append((f"{cfg.model['type']}+metadata", dict(cfg.model, fusion=dict(type="GatedAttention"))))
    rows, results = [], {}
    for label, model_cfg in configs:
        model, wall, cpu, epochs = train_vkit(label, model_cfg, data)
        m = evaluate_model(model, datasets)
        results[label] = m
        rows.append([label, f"{wall:.1f}", f"{cpu:.1f}", epochs,
                     m["recall@10"], m["ndcg@10"], m["cold_recall@10"], m["cold_ndcg@10"]])
    _table("models (test split; full ranking over all items; cold = ranking among items without training interactions)",
           ["model", "train s", "train CPU s", "epochs", "Recall@10", "NDCG@10", "cold Recall@10", "cold NDCG@10"], rows)
    mf = results["BPRMF"]
    for name in [n for n in ("VBPR", "TwoTower", "TwoTower+metadata") if n in results]:
        gain = results[name]["cold_recall@10"] / max(mf["cold_recall@10"], 1e-9) - 1
        overall = results[name]["recall@10"] - mf["recall@10"]
        ok = gain >= 0.2 and overall >= 0
        print(f"  {name} vs BPRMF: cold Recall@10 {gain:+.0%} relative, overall Recall@10 {overall:+.4f} -> "
              f"{'PASS' if ok else 'FAIL'} (target: >= +20% cold, not worse overall)")
    return results


# ---------------------------------------------------------------------- part 1c: item encoders
#: ``(label, BACKBONES config, clip frames, pretraining objective or None, pooling)``: the encoders of the probe
#: table. Pooling ``pooled`` is what the recommendation task embeds (a TimeSformer's class token); ``tokens`` (the
#: mean of its patch tokens, what VideoMAE probes) is there to judge the objectives fairly: ``mae`` never trains
#: the class token.
TINY_C3D = dict(type="TinyC3D", widths=(8, 16, 32), num_frames=8, input_size=(32, 32))
TINY_VIT = dict(type="TimeSformer", num_frames=8, input_size=32, patch_size=8, embed_dims=64, num_heads=4,
                num_transformer_layers=2)
ENCODERS: list[tuple[str, dict[str, Any], int, str | None, str]] = [
    ("ClipStats (default)", dict(type="ClipStats"), 16, None, "pooled"),
    ("TinyC3D random init", TINY_C3D, 8, None, "pooled"),
    ("TinyC3D vkit pretrain vicreg", TINY_C3D, 8, "vicreg", "pooled"),
    ("TimeSformer random init", TINY_VIT, 8, None, "pooled"),
    ("TimeSformer vkit pretrain vicreg", TINY_VIT, 8, "vicreg", "pooled"),
    ("TimeSformer vkit pretrain mae", TINY_VIT, 8, "mae", "pooled"),
    ("TimeSformer random init, patch tokens", TINY_VIT, 8, None, "tokens"),
    ("TimeSformer vkit pretrain vicreg, patch tokens", TINY_VIT, 8, "vicreg", "tokens"),
    ("TimeSformer vkit pretrain mae, patch tokens", TINY_VIT, 8, "mae", "tokens"),
]


def _genre_data(tmp: Path) -> tuple[list[Path], list[Path], np.ndarray, np.ndarray]:
    """The default generated catalogue: ``(catalogue videos, new videos, their genres)``."""
    import json

    from vkit.plugins.recommendation.synthetic import generate

    root = generate(tmp / "genre-data", seed=0).parent
    truth = json.loads((root / "truth.json").read_text())
    names = truth["genre_names"]
    new = set(truth["new_items"])
    items = sorted(truth["genres"])
    old_items, new_items = [i for i in items if i not in new], [i for i in items if i in new]
    label = lambda ids: np.array([names.index(truth["genres"][i]) for i in ids])  # noqa: E731
    video = lambda ids: [root / "videos" / f"{i}.mp4" for i in ids]  # noqa: E731
    return video(old_items), video(new_items), label(old_items), label(new_items)


_CLIPS: dict[tuple[int, tuple[Path, ...]], np.ndarray] = {}


def _item_features(backbone: dict[str, Any], frames: int, videos: list[Path], pool: str = "pooled") -> np.ndarray:
    """Each video's item embedding as the recommendation task computes it (:func:`item_embedder`: the middle
    ``frames`` frames at 32x32); the clips are decoded once per clip length and reused by every encoder."""
    from vkit.plugins.recommendation.content import item_embedder

    embedder = item_embedder(backbone, num_frames=frames, size=(32, 32))
    key = (frames, tuple(videos))
    if key not in _CLIPS:
        _CLIPS[key] = np.concatenate([embedder.decode(str(path)) for path in videos])
    if pool == "pooled":
        return embedder.encode(_CLIPS[key])
    net = embedder.net  # the same frozen backbone; the mean of its per-frame patch-token features
    clips = torch.as_tensor(_CLIPS[key])
    return torch.cat([net.infer(net.normalize(clips[i:i + 64]), temporal=True).mean(1)
                      for i in range(0, len(clips), 64)]).numpy()


def _probe(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out accuracy of a logistic-regression probe on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    return float(probe.fit(train, y_train).score(test, y_test))


def encoders_part(tmp: Path, epochs: int, two_tower: bool = True) -> dict[str, Any]:
    """The probe table of :data:`ENCODERS`; then two-tower Recall@10 with ClipStats vs the best pretrained encoder."""
    from vkit.hooks.manager import get_plugin_manager

    get_plugin_manager().register_components()
    old, new, y_old, y_new = _genre_data(tmp)
    db = f"sqlite:///{tmp / 'pretrain.db'}"
    before = os.environ.get("VKIT_DB_URL")
    os.environ["VKIT_DB_URL"] = db  # pretrained='run:ID' resolves in this store
    try:
        return _encoders(tmp, epochs, two_tower, db, old, new, y_old, y_new)
    finally:
        if before is None:
            os.environ.pop("VKIT_DB_URL", None)
        else:
            os.environ["VKIT_DB_URL"] = before


def _encoders(tmp: Path, epochs: int, two_tower: bool, db: str, old: list[Path], new: list[Path],
              y_old: np.ndarray, y_new: np.ndarray) -> dict[str, Any]:
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    rows, results, runs = [], {}, {}
    for label, backbone, frames, objective, pool in ENCODERS:
        cfg, wall, loss = dict(backbone), "-", "-"
        again = runs.get((repr(backbone), objective))
        if again is not None:  # the same pretraining, pooled another way
            cfg["pretrained"], wall, loss = again
        elif objective is not None:
            start = time.perf_counter()
            summary = pretrain(backbone, [str(p) for p in old],
                               PretrainOptions(objective=objective, epochs=epochs, batch_size=16, lr=3e-3, segments=2,
                                               workers=2), db_url=db, work_dir=tmp / f"pretrain-{len(rows)}")
            wall = f"{time.perf_counter() - start:.0f}"
            loss = f"{summary.loss_curve[0]:.3f} -> {summary.loss_curve[-1]:.3f}"
            cfg["pretrained"] = f"run:{summary.run_id}"
            runs[(repr(backbone), objective)] = (cfg["pretrained"], wall, loss)
        start = time.perf_counter()
        train, test = _item_features(cfg, frames, old, pool), _item_features(cfg, frames, new, pool)
        accuracy = _probe(train, y_old, test, y_new)
        print(f"  {label}: pretrain {wall} s, features + probe {time.perf_counter() - start:.0f} s, "
              f"accuracy {accuracy:.3f}", flush=True)
        results[label] = dict(accuracy=accuracy, backbone=cfg, frames=frames)
        rows.append([label, train.shape[1], objective or "-", wall, loss, accuracy])
    _table(f"item encoders: linear probe of the hidden genre (6 genres, chance 0.17; fit on {len(old)} catalogue "
           f"videos, accuracy on {len(new)} new ones; vkit pretrain: {epochs} epochs on the catalogue videos, "
           "their genres unseen)",
           ["encoder", "dims", "pretraining", "pretrain s", "loss first -> last", "probe accuracy"], rows)
    if two_tower:
        best = max((k for k in results if "pretrain" in k and "tokens" not in k), key=lambda k: results[k]["accuracy"])
        tower_rows = []
        for label, content in (("ClipStats (default)", None),
                               (best, dict(backbone=results[best]["backbone"], num_frames=results[best]["frames"]))):
            data = load_data(tmp / f"tower-{len(tower_rows)}", content)
            model, wall, _, _ = train_vkit("TwoTower", dict(data["cfg"].model), data)
            from vkit.plugins.recommendation.evaluator import evaluate_model

            m = evaluate_model(model, data["datasets"])
            tower_rows.append([label, f"{wall:.1f}", m["recall@10"], m["ndcg@10"], m["cold_recall@10"],
                               m["cold_ndcg@10"]])
        _table("two-tower with each item encoder (test split; cold = items without training interactions)",
               ["content encoder", "train s", "Recall@10", "NDCG@10", "cold Recall@10", "cold NDCG@10"], tower_rows)
    return results


# ---------------------------------------------------------------------- part 1b: peers
#: cornac's settings: the latent sizes of vkit's comparison models (32); learning rate, regularisation and
#: epochs the best Recall@10 (mean of seeds 0, 1) of a grid on the default data -- BPR: k 10/32, lr 0.005-0.02,
#: lambda_reg 0.001-0.05, 50-300 iterations (cornac's own defaults, k=10, lr=0.001, 100 iterations, rank like
#: Popularity here); VBPR: 3-50 epochs, lr 0.001-0.01, lambda_w 0.001-1 (more epochs overfit).
CORNAC_BPR = dict(k=32, max_iter=300, learning_rate=0.005, lambda_reg=0.001)
#: cornac's BPR at a budget like vkit's: its default lambda_reg and 100 epochs, the learning rate raised to 0.01.
CORNAC_BPR_PLAIN = dict(k=32, max_iter=100, learning_rate=0.01, lambda_reg=0.01)
CORNAC_VBPR = dict(k=32, k2=32, n_epochs=5, batch_size=100, learning_rate=0.005, lambda_w=0.01, lambda_b=0.01)


class PeerVectors:
    """A trained peer as :func:`~vkit.plugins.recommendation.evaluator.evaluate_model` ranks it: user and item
    vectors whose dot product is the peer's score."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users = torch.as_tensor(np.asarray(users, np.float32))
        self.items = torch.as_tensor(np.asarray(items, np.float32))

    def eval(self) -> PeerVectors:
        return self

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.users[users]

    def item_vectors(self) -> torch.Tensor:
        return self.items


def cornac_train_set(datasets: dict[str, Any]) -> Any:
    """The training interactions as a cornac ``Dataset`` whose user/item indices are vkit's (cold items included)."""
    from collections import OrderedDict

    from cornac.data import Dataset

    split = datasets["split"]
    data = split.data
    users, items = data.users[split.train], data.items[split.train]
    return Dataset.build([(int(u), int(i), 1.0) for u, i in zip(users, items)],
                         global_uid_map=OrderedDict((u, u) for u in range(data.num_users)),
                         global_iid_map=OrderedDict((i, i) for i in range(data.num_items)), seed=0)


def cornac_bpr(datasets: dict[str, Any], seed: int, settings: dict[str, Any] = CORNAC_BPR) -> PeerVectors:
    import cornac

    model = cornac.models.BPR(seed=seed, verbose=False, **settings).fit(cornac_train_set(datasets))
    return PeerVectors(model.get_user_vectors(), model.get_item_vectors())


def cornac_vbpr(datasets: dict[str, Any], seed: int) -> PeerVectors:
    """cornac's VBPR on vkit's standardised item content (the features vkit's VBPR sees)."""
    import contextlib
    import io

    import cornac
    from cornac.data import ImageModality

    train_set = cornac_train_set(datasets)
    image = ImageModality(features=datasets["content"], ids=list(range(len(datasets["content"]))))
    train_set.add_modalities(item_image=image.build(id_map=train_set.iid_map))
    model = cornac.models.VBPR(seed=seed, verbose=False, use_gpu=False, **CORNAC_VBPR)
    with contextlib.redirect_stdout(io.StringIO()):  # "Optimization finished!"
        model.fit(train_set)
    return PeerVectors(model.get_user_vectors(), model.get_item_vectors())


def _cornac_missing() -> str | None:
    """Why the cornac rows cannot run (``None``: they can)."""
    try:
        import cornac  # noqa: F401
    except ImportError as exc:
        return f"cannot run: cornac is not importable ({exc}); pip install 'vkit[bench]' (or pip install cornac)"
    return None


def peers_part(data: dict[str, Any], seeds: list[int]) -> dict[str, list[dict[str, float]]]:
    """vkit's BPR-MF and VBPR against cornac's BPR and VBPR, each over ``seeds``, on one split and evaluator."""
    from vkit.plugins.recommendation.evaluator import comparison_configs, evaluate_model

    cfg, datasets = data["cfg"], data["datasets"]
    settings = {c["type"]: c for c in comparison_configs(cfg)}
    missing = _cornac_missing()
    peers: list[tuple[str, Any]] = [
        ("vkit BPRMF", lambda seed: train_vkit("BPRMF", settings.get("BPRMF", dict(type="BPRMF")), data, seed)[0]),
        ("cornac BPR", lambda seed: cornac_bpr(datasets, seed)),
        ("cornac BPR plain", lambda seed: cornac_bpr(datasets, seed, CORNAC_BPR_PLAIN)),
        ("vkit VBPR", lambda seed: train_vkit("VBPR", settings.get("VBPR", dict(type="VBPR")), data, seed)[0]),
        ("cornac VBPR", lambda seed: cornac_vbpr(datasets, seed)),
    ]
    rows, results = [], {}
    for label, train in peers:
        if label.startswith("cornac") and missing:
            rows.append([label, "cannot run (below)"] + ["-"] * (len(seeds) + 3))
            continue
        wall, cpu, runs = time.perf_counter(), _cpu_s(), []
        for seed in seeds:
            runs.append(evaluate_model(train(seed), datasets))
        results[label] = runs
        mean = {k: float(np.mean([r[k] for r in runs])) for k in ("recall@10", "ndcg@10", "cold_recall@10")}
        rows.append([label, f"{(time.perf_counter() - wall) / len(seeds):.1f} / {(_cpu_s() - cpu) / len(seeds):.1f}",
                     *[r["recall@10"] for r in runs], mean["recall@10"], mean["ndcg@10"], mean["cold_recall@10"]])
    if not missing:
        import cornac

        print(f"cornac {cornac.__version__}: BPR {CORNAC_BPR}; BPR plain {CORNAC_BPR_PLAIN}; VBPR {CORNAC_VBPR}")
    _table(f"peers (test split, the same evaluator; seeds {', '.join(map(str, seeds))}; Recall/NDCG: mean of seeds)",
           ["model", "train s / CPU s per seed", *[f"R@10 seed {s}" for s in seeds], "Recall@10", "NDCG@10",
            "cold Recall@10"], rows)
    if missing:
        print(f"  cornac rows: {missing}")
    for ours, theirs in (("vkit BPRMF", "cornac BPR"), ("vkit BPRMF", "cornac BPR plain"), ("vkit VBPR", "cornac VBPR")):
        if ours in results and theirs in results:
            a, b = (float(np.mean([r["recall@10"] for r in results[n]])) for n in (ours, theirs))
            print(f"  {ours} / {theirs}: Recall@10 ratio {a / max(b, 1e-9):.3f} "
                  f"({'level or better' if a >= 0.97 * b else 'TRAILS'}; target >= 0.97)")
    return results


# ---------------------------------------------------------------------- part 2
def run_part(tmp: Path) -> None:
    vkit = str(Path(sys.executable).with_name("vkit"))
    args = [vkit, "--db", f"sqlite:///{tmp / 'run.db'}", "run", "recommendation", "--work-dir", str(tmp / "run"),
            "--data-root", str(tmp / "run-data")]
    before, wall = _cpu_s(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, _cpu_s(resource.RUSAGE_CHILDREN) - before
    status = "finished" if out.returncode == 0 else f"FAILED ({out.stderr.strip().splitlines()[-1:]})"
    _table("vkit run recommendation (default config, fresh data cache: generation + embedding included)",
           ["status", "wall s", "CPU s", "target"], [[status, f"{wall:.1f}", f"{cpu:.1f}", "wall < 300 s on 2 cores"]])


# ---------------------------------------------------------------------- part 3
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def topk_part(users: int, items: int, dim: int, seen_per_user: int, k: int, chunk: int) -> None:
    from vkit.plugins.recommendation.ranking import csr_gather, topk_items

    g = torch.Generator().manual_seed(0)
    user_vecs, item_vecs = torch.randn(users, dim, generator=g), torch.randn(items, dim, generator=g)
    indptr = np.arange(0, (users + 1) * seen_per_user, seen_per_user, dtype=np.int64)
    indices = torch.randint(0, items, (users * seen_per_user,), generator=g).numpy()
    seen = (indptr, indices)
    rows = []
    base = _peak_rss_mb()
    start = time.perf_counter()
    _, top = topk_items(user_vecs, item_vecs, k, seen=seen, chunk=chunk)
    t_vkit = time.perf_counter() - start
    peak_vkit = _peak_rss_mb() - base
    rows.append([f"vkit chunked (chunk {chunk})", f"{t_vkit:.2f}", f"{users / t_vkit:,.0f}", f"{peak_vkit:,.0f}"])
    base = _peak_rss_mb()
    start = time.perf_counter()
    scores = user_vecs @ item_vecs.T
    owner, cols = csr_gather(seen, torch.arange(users))
    scores[owner, cols] = -torch.inf
    peer = torch.topk(scores, k, dim=1).indices
    t_peer = time.perf_counter() - start
    peak_peer = _peak_rss_mb() - base
    del scores
    rows.append(["plain torch.topk on the full matrix", f"{t_peer:.2f}", f"{users / t_peer:,.0f}", f"{peak_peer:,.0f}"])
    same = bool(torch.equal(top, peer))
    _table(f"exact top-{k}: {users:,} users x {items:,} items, d={dim}, {seen_per_user} seen items/user excluded "
           f"(identical results: {same}; vkit/peer time ratio {t_vkit / t_peer:.2f})",
           ["method", "seconds", "users/s", "peak extra RSS MB"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seen", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--model-threads", type=int, default=None,
                        help="torch threads for training the models and the vkit run (default: torch's); "
                             "1 is faster for these small models on a busy shared machine")
    parser.add_argument("--seeds", default="0,1", help="seeds of the peers part (comma-separated)")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-peers", action="store_true", help="skip vkit BPR-MF/VBPR vs cornac BPR/VBPR")
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-topk", action="store_true")
    parser.add_argument("--skip-encoders", action="store_true",
                        help="skip the item-encoder probe (ClipStats vs vkit pretrain-ed backbones)")
    parser.add_argument("--pretrain-epochs", type=int, default=30, help="vkit pretrain epochs of the encoders part")
    args = parser.parse_args()
    print(cpu_info())
    with tempfile.TemporaryDirectory(prefix="vkit-bench-rec-") as folder:
        tmp = Path(folder)
        if not args.skip_topk:  # first: the peer's full score matrix needs the memory while it is free
            topk_part(args.users, args.items, args.dim, args.seen, args.k, args.chunk)
        if args.model_threads:
            torch.set_num_threads(args.model_threads)
            os.environ["OMP_NUM_THREADS"] = str(args.model_threads)  # the vkit run subprocess too
            print(f"models and vkit run: {args.model_threads} torch thread(s)")
        if not (args.skip_models and args.skip_peers):
            data = load_data(tmp)
            if not args.skip_models:
                models_part(data)
            if not args.skip_peers:
                peers_part(data, [int(s) for s in args.seeds.split(",")])
        if not args.skip_encoders:
            encoders_part(tmp / "encoders", args.pretrain_epochs)
        if not args.skip_run:
            run_part(tmp)


if __name__ == "__main__":
    main()
