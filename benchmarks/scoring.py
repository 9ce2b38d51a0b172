"""``vkit score`` against the mmaction2 peer on a generated archive: clips/s, equal scores, flat memory.

The peer is a loop of ``mmaction.apis.inference_recognizer`` (PyAVInit →
SampleFrames → PyAVDecode → Resize → CenterCrop → FormatShape) over the same
videos. Both load the same X3D-S recognizer weights (random init, BatchNorm
statistics calibrated on random clips and a head scaled so the scores spread
over (0, 1), so "equal scores" is a real check; saved once as safetensors) and take the same
clips (mmaction2's ``SampleFrames`` indices, ``x3d_s_13x6x1`` settings, center
crop); each segment's score is the sigmoid of the one-class head's logit. vkit
decodes in DataLoader workers (streaming, only the sampled frames converted),
prepares the model as vkit does for inference (BatchNorm folded into the
convolutions, ``channels_last_3d``), batches clips across videos (``--batch-size
auto`` by default: the fastest size, found on the first batches) and commits
results to a SQLite store, as ``vkit score`` does.

Printed per archive size: clips/s of vkit and the peer, their ratio, the
largest absolute score difference, the batch size vkit used, the decode-only
ceiling (vkit's workers, no model), the model-only ceilings (vkit: batches of
random clips, no decode; the peer: its model on its own input tensor),
and the peak RSS of vkit's main process and of its largest worker (taken
before the ceilings run). vkit and the peer each run in a fresh subprocess,
so each peak RSS is its own; both warm the model up on one batch first.

    python benchmarks/scoring.py --quick      # 10 and 40 videos of 64 px, 1 clip each (a harness check)
    python benchmarks/scoring.py              # 50 and 500 videos of 160 px, 4 clips each (takes long on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIP_LEN, INTERVAL = 13, 6                   # x3d_s_13x6x1
MODEL_CLIPS = 240                            # clips timed for each model-only rate (a rate, not the archive)
MEAN, STD = 114.75, 57.38


# ----------------------------------------------------------------------------- shared set-up
def model_cfg() -> dict[str, Any]:
    """mmaction2's X3D-S recognizer with a one-class head and per-clip outputs (``average_clips=None``)."""
    return dict(
        type="Recognizer3D",
        backbone=dict(type="X3D", gamma_w=1, gamma_b=2.25, gamma_d=2.2),
        cls_head=dict(type="X3DHead", in_channels=432, num_classes=1, spatial_type="avg", dropout_ratio=0.5,
                      fc1_bias=False, average_clips=None),
        data_preprocessor=dict(type="ActionDataPreprocessor", mean=[MEAN] * 3, std=[STD] * 3, format_shape="NCTHW"),
    )


def _spread_scores(model: Any) -> None:
    """BatchNorm statistics calibrated on clips (as training leaves them) and a head whose logits spread (~N(0, 2)).

    A randomly initialised X3D in eval mode maps every clip to nearly the same
    feature (its BatchNorms hold mean 0, var 1), so every score would be ~0.5 and
    any two implementations would agree; with calibrated statistics the
    features depend on the clip and "equal scores" is a real check.
    """
    import torch

    gen = torch.Generator().manual_seed(1)
    clips = (torch.randn(16, 3, CLIP_LEN, 64, 64, generator=gen)
             * torch.linspace(0.5, 1.5, 16).view(16, 1, 1, 1, 1) + torch.linspace(-1, 1, 16).view(16, 1, 1, 1, 1))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                       # a cumulative average over the calibration batches
        m.weight.data.uniform_(0.75, 1.25, generator=gen)   # mmaction zero-inits some; make every branch count
    model.train()
    with torch.no_grad():
        for chunk in clips.split(4):
            model.backbone(chunk)
    model.eval()
    for m in norms:
        m.momentum = 0.1
    fc = model.cls_head.fc2
    with torch.inference_mode():
        logits = model.cls_head(model.backbone(clips[::2])).flatten()
        scale = 2.0 / max(float(logits.std()), 1e-12)
        fc.weight.mul_(scale)
        fc.bias.copy_((fc.bias - float(logits.mean())) * scale)  # centred: mean logit 0


def build_recognizer(weights: Path | None = None) -> Any:
    import torch

    from vkit.core.checkpoint import load_checkpoint
    from vkit.core.compat import ensure_mmaction

    ensure_mmaction()
    from mmengine.registry import init_default_scope
    from mmaction.registry import MODELS

    import logging

    from mmengine.logging import MMLogger

    init_default_scope("mmaction")
    torch.manual_seed(0)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)              # no per-tensor init_weights dump
    try:
        model = MODELS.build(model_cfg())
        model.init_weights()
    finally:
        logger.setLevel(level)
    model.eval()
    if weights is not None:
        load_checkpoint(weights, model)
    else:
        _spread_scores(model)
    return model


def sample_indices(total_frames: int, clips: int) -> np.ndarray:
    """mmaction2's own ``SampleFrames`` (test mode) frame indices, ``(clips * 13,)``."""
    from vkit.core.compat import ensure_mmaction

    ensure_mmaction()
    from mmaction.datasets.transforms import SampleFrames

    out = SampleFrames(clip_len=CLIP_LEN, frame_interval=INTERVAL, num_clips=clips, test_mode=True)(
        dict(total_frames=total_frames, start_index=0))
    return np.asarray(out["frame_inds"], dtype=np.int64)


class X3DScorer:
    """vkit's VideoScorer for the benchmark: same weights, same frames, same crop as the peer."""

    memory_format = "channels_last_3d"

    def __init__(self, weights: Path, clips: int, size: int) -> None:
        import torch

        from vkit.core.backbones.inference import fold_batchnorm, to_memory_format
        from vkit.core.checkpoint import load_meta

        self.num_segments, self.size = clips, size
        self.model = build_recognizer(weights)
        self.model.requires_grad_(False)
        fold_batchnorm(self.model)                   # as prepare_for_inference does for vkit's backbones
        to_memory_format(self.model, torch.channels_last_3d)
        self.model_sha256 = load_meta(weights)["sha256"]
        self.mean = torch.tensor(MEAN)
        self.std = torch.tensor(STD)

    def decode(self, path: str) -> np.ndarray:
        from vkit.core.video import probe, read_clip

        info = probe(path)
        frames = read_clip(path, sample_indices(info.frames, self.num_segments), frames=info.frames)
        frames = _center_crop(_resize_short(frames, self.size), self.size)
        clips = frames.reshape(self.num_segments, CLIP_LEN, *frames.shape[1:])      # (S, T, H, W, 3)
        return ((clips.transpose(0, 4, 1, 2, 3).astype(np.float32) - MEAN) / STD).astype(np.float32)

    def score(self, clips: Any) -> Any:
        import torch

        feats = self.model.backbone(clips)
        return torch.sigmoid(self.model.cls_head(feats)).flatten()

    def summarize(self, segment_scores: np.ndarray, info: Any) -> dict[str, Any]:
        return dict(events=[])


def _resize_short(frames: np.ndarray, size: int) -> np.ndarray:
    """mmaction2's ``Resize(scale=(-1, size))`` (bilinear, via mmcv) — a no-op on videos already ``size`` high."""
    import mmcv

    h, w = frames.shape[1:3]
    if min(h, w) == size and h == size:
        return frames
    new_w = int(round(w * size / h))
    return np.stack([mmcv.imresize(f, (new_w, size)) for f in frames])


def _center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top:top + size, left:left + size]


def make_archive(root: Path, count: int, size: int, frames: int) -> list[str]:
    """``count`` deterministic videos (moving blocks) of ``size`` x ``size``, ``frames`` frames at 15 fps."""
    from vkit.core.video import write_video

    paths = []
    for i in range(count):
        path = root / f"v{i:04d}.mp4"
        if not path.exists():
            rng = np.random.default_rng(i)
            base = rng.integers(0, 255, size=(size // 16, size // 16, 3), dtype=np.uint8)
            video = np.stack([np.kron(np.roll(base, t * (i % 3 + 1), axis=1), np.ones((16, 16, 1), np.uint8))
                              for t in range(frames)])
            write_video(path, video, fps=15)
        paths.append(str(path))
    return paths


def peak_rss_mb() -> tuple[float, float]:
    """Peak RSS (MiB) of this process and of its largest finished child."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


# ----------------------------------------------------------------------------- measurements (child processes)
def run_vkit(paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from vkit.core.store import open_store
    from vkit.workflows.score import ResultWriter, ScoreOptions, local_outcomes, plan_jobs

    scorer = X3DScorer(Path(args.weights), args.clips, args.size)
    store = open_store(f"sqlite:///{args.db}")
    jobs = plan_jobs(store, paths, scorer.model_sha256)
    run_id = store.start_run("benchmark-x3d", "benchmark", {}, seed=0, model_sha256=scorer.model_sha256)
    writer = ResultWriter(store, run_id, lambda payload: None)
    options = ScoreOptions(workers=args.workers, batch_size=args.batch_size)
    _warm_up(scorer, args)
    began, clips, scores, stats = time.perf_counter(), 0, {}, {}
    for outcome in local_outcomes(jobs, scorer, options, stats):
        if outcome["status"] == "failed":
            raise RuntimeError(outcome["error"])
        writer.add(outcome)
        clips += outcome["clips"]
        scores[outcome["path"]] = [s["score"] for s in outcome["scores"]]
    writer.flush()
    seconds = time.perf_counter() - began
    store.finish_run(run_id)
    rss_main, rss_child = peak_rss_mb()
    batch = int(stats["batch_size"])
    return dict(clips=clips, seconds=seconds, scores=scores, rss_main_mb=rss_main, rss_child_mb=rss_child, batch_size=batch,
                decode=run_decode(paths, args, scorer), model=run_model(paths, batch, args, scorer))


def _warm_up(scorer: X3DScorer, args: argparse.Namespace) -> None:
    """One batch through the model first (oneDNN builds its kernels on the first call of a shape; with
    ``auto`` the tuner warms each size it tries up itself)."""
    import torch

    n = args.batch_size if isinstance(args.batch_size, int) else 1
    with torch.inference_mode():
        scorer.score(torch.zeros(n, 3, CLIP_LEN, args.size, args.size).contiguous(memory_format=torch.channels_last_3d))


def run_peer(paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from mmaction.apis import inference_recognizer
    from mmengine.dataset import Compose

    model = build_recognizer(Path(args.weights))
    pipeline = Compose([
        dict(type="PyAVInit"),
        dict(type="SampleFrames", clip_len=CLIP_LEN, frame_interval=INTERVAL, num_clips=args.clips, test_mode=True),
        dict(type="PyAVDecode"),
        dict(type="Resize", scale=(-1, args.size)),
        dict(type="CenterCrop", crop_size=args.size),
        dict(type="FormatShape", input_format="NCTHW"),
        dict(type="PackActionInputs"),
    ])
    seen: dict[str, Any] = {}
    forward = model.backbone.forward

    def spy(x: Any) -> Any:  # what the peer's backbone is fed (mmaction2's FormatShape decides the layout)
        seen.setdefault("input", x.detach().clone(memory_format=torch.preserve_format))
        return forward(x)

    model.backbone.forward = spy
    inference_recognizer(model, paths[0], pipeline)              # warm-up, as for vkit
    model.backbone.forward = forward
    began, clips, scores = time.perf_counter(), 0, {}
    for path in paths:
        result = inference_recognizer(model, path, pipeline)
        logits = result.pred_score.reshape(-1)
        scores[path] = torch.sigmoid(logits).tolist()
        clips += logits.numel()
    seconds = time.perf_counter() - began
    rss_main, rss_child = peak_rss_mb()
    x = seen["input"]
    with torch.inference_mode():                                 # the peer's model-only rate, on its own input
        model.cls_head(model.backbone(x))
        began_model, reps = time.perf_counter(), max(1, MODEL_CLIPS // x.shape[0])
        for _ in range(reps):
            model.cls_head(model.backbone(x))
        model_rate = reps * x.shape[0] / (time.perf_counter() - began_model)
    return dict(clips=clips, seconds=seconds, scores=scores, rss_main_mb=rss_main, rss_child_mb=rss_child,
                model_rate=model_rate, channels_last=bool(x.is_contiguous(memory_format=torch.channels_last_3d)))


def run_decode(paths: list[str], args: argparse.Namespace, scorer: X3DScorer) -> dict[str, Any]:
    """Decode-only ceiling: vkit's workers decoding every clip, no model."""
    from torch.utils.data import DataLoader

    from vkit.workflows.score_engine import VideoStream

    loader = DataLoader(VideoStream([(p, None) for p in paths], scorer), batch_size=None, num_workers=args.workers,
                        collate_fn=lambda x: x, multiprocessing_context="fork" if args.workers else None)
    began, clips = time.perf_counter(), 0
    for item in loader:
        clips += item["clips"]
    seconds = time.perf_counter() - began
    return dict(clips=clips, seconds=seconds, rate=clips / seconds)


def run_model(paths: list[str], batch_size: int, args: argparse.Namespace, scorer: X3DScorer) -> dict[str, Any]:
    """Model-only ceiling: ``MODEL_CLIPS`` clips in full batches (vkit's size) of random data, no decode."""
    import torch

    total = min(len(paths) * args.clips, MODEL_CLIPS)
    batch = torch.randn(batch_size, 3, CLIP_LEN, args.size, args.size).contiguous(
        memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        scorer.score(batch)
        began, clips = time.perf_counter(), 0
        while clips < total:
            n = min(batch_size, total - clips)
            scorer.score(batch[:n])
            clips += n
    seconds = time.perf_counter() - began
    return dict(clips=clips, seconds=seconds, rate=clips / seconds)


CHILDREN = dict(vkit=run_vkit, peer=run_peer)


def child(args: argparse.Namespace) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    paths = json.loads(Path(args.paths).read_text())
    result = CHILDREN[args.child](paths, args)
    print("RESULT " + json.dumps(result))


# ----------------------------------------------------------------------------- parent
def measure(kind: str, paths: list[str], args: argparse.Namespace, work: Path, tag: str) -> dict[str, Any]:
    listing = work / f"paths_{tag}.json"
    listing.write_text(json.dumps(paths))
    (work / f"{tag}_{kind}.db").unlink(missing_ok=True)                  # a fresh store: nothing is skipped
    cmd = [sys.executable, __file__, "--child", kind, "--paths", str(listing), "--weights", str(work / "x3d.safetensors"),
           "--db", str(work / f"{tag}_{kind}.db"), "--clips", str(args.clips), "--size", str(args.size),
           "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{kind} on {len(paths)} videos failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    result["rate"] = result["clips"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 40 videos of 64 px, 1 clip each (harness check).")
    parser.add_argument("--sizes", type=int, nargs=2, default=None, help="the two archive sizes (default 50 500)")
    parser.add_argument("--clips", type=int, default=None, help="clips per video (default 4; quick 1)")
    parser.add_argument("--size", type=int, default=None, help="crop size in px (default 160, X3D-S; quick 64)")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (default 90; quick 40)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v), default="auto",
                        help="vkit's clips per batch, or 'auto' (default; the peer batches each video's clips)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the archive and stores (default: a temp dir)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = args.sizes or ([10, 40] if args.quick else [50, 500])
    args.clips = args.clips or (1 if args.quick else 4)
    args.size = args.size or (64 if args.quick else 160)
    frames = args.frames or (40 if args.quick else 90)
    work = args.work or Path(tempfile.mkdtemp(prefix="vkit-bench-scoring-"))
    work.mkdir(parents=True, exist_ok=True)
    from vkit.core.checkpoint import save_checkpoint

    save_checkpoint(build_recognizer(), work / "x3d.safetensors", meta=dict(model=model_cfg()))
    paths = make_archive(work / "archive", max(sizes), args.size, frames)
    print(f"archive {work / 'archive'}: {max(sizes)} videos {args.size}x{args.size}, {frames} frames; "
          f"{args.clips} clip(s) of {CLIP_LEN}x{args.size}x{args.size} per video; workers {args.workers}, "
          f"batch size {args.batch_size}")
    rows = []
    for n in sizes:
        subset = paths[:n]
        res = {kind: measure(kind, subset, args, work, f"n{n}") for kind in ("vkit", "peer")}
        res["decode"], res["model"] = res["vkit"]["decode"], res["vkit"]["model"]
        diff = max(abs(a - b) for p in subset for a, b in zip(res["vkit"]["scores"][p], res["peer"]["scores"][p]))
        rows.append((n, res, diff))
    header = (f"{'videos':>6} {'vkit c/s':>9} {'peer c/s':>9} {'ratio':>6} {'max|diff|':>10} {'batch':>5} {'decode c/s':>11} "
              f"{'model c/s':>10} {'peer model':>10} {'vkit RSS MiB':>12} {'worker RSS':>10} {'peer RSS':>9}")
    print(header)
    for n, res, diff in rows:
        print(f"{n:>6} {res['vkit']['rate']:>9.2f} {res['peer']['rate']:>9.2f} "
              f"{res['vkit']['rate'] / res['peer']['rate']:>5.2f}x {diff:>10.2e} {res['vkit']['batch_size']:>5} "
              f"{res['decode']['rate']:>11.2f} {res['model']['rate']:>10.2f} {res['peer']['model_rate']:>10.2f} "
              f"{res['vkit']['rss_main_mb']:>12.0f} {res['vkit']['rss_child_mb']:>10.0f} "
              f"{res['peer']['rss_main_mb']:>9.0f}")
    (small, rs, _), (large, rl, _) = rows
    growth = rl["vkit"]["rss_main_mb"] / rs["vkit"]["rss_main_mb"] - 1
    worst_ratio = min(r["vkit"]["rate"] / r["peer"]["rate"] for _, r, _ in rows)
    worst_diff = max(d for _, _, d in rows)
    print(f"peak RSS growth {small} -> {large} videos: {growth * 100:+.1f}% (target < 10%); "
          f"speed-up {worst_ratio:.2f}x (target >= 2x); max |score diff| {worst_diff:.2e} (target <= 1e-4)")
    layout = "channels_last_3d" if rl["peer"]["channels_last"] else "contiguous"
    print(f"the peer's backbone input is {layout} (mmaction2's FormatShape transposes decoded NTHWC frames); "
          f"model-only: vkit {rl['model']['rate']:.2f} clips/s (BatchNorm folded, channels_last_3d, batch "
          f"{rl['vkit']['batch_size']}) vs peer {rl['peer']['model_rate']:.2f} (batch {args.clips}): "
          f"{rl['model']['rate'] / rl['peer']['model_rate']:.2f}x")


if __name__ == "__main__":
    main()
