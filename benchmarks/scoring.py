"""``vkit score`` against the mmaction2 peer on a generated archive: clips/s, equal scores, flat memory.

The peer is a loop of ``mmaction.apis.inference_recognizer`` (PyAVInit →
SampleFrames → PyAVDecode → Resize → CenterCrop → FormatShape) over the same
videos. Both load the same X3D-S recognizer weights, saved once as
safetensors: by default (``--model trained``) X3D-S fine-tuned for 4 epochs on
48 separate labelled videos of the same kind, then PreciseBN
(:func:`trained_weights`, cached in ``--work``), so the scores mean something
and ``auto``'s gate judges a model that has learnt its task; with ``--model
calibrated`` the earlier untrained model (BatchNorm statistics calibrated on
random clips, a head scaled so the scores spread over (0, 1)). Both take the same
clips (mmaction2's ``SampleFrames`` indices, ``x3d_s_13x6x1`` settings, center
crop); each segment's score is the sigmoid of the one-class head's logit. vkit
decodes in DataLoader workers (streaming, only the sampled frames converted),
prepares the model as vkit does for inference (BatchNorm folded into the
convolutions, ``channels_last_3d``), batches clips across videos (``--batch-size
auto`` by default: the fastest size, found on the first batches) and commits
results to a SQLite store, as ``vkit score`` does.

Printed per archive size and vkit precision (``--precisions``, default fp32
and auto; the peer always runs fp32): clips/s of vkit and the peer, their
ratio, the largest absolute score difference and the Spearman rank correlation
of the clip scores, the task-metric delta (ROC AUC of per-video mean scores
against the archive's labels, vkit minus the peer), the batch size vkit used,
the decode-only ceiling (vkit's workers, no model), the model-only ceilings
(vkit at that precision: batches of random clips, no decode; the peer: its
model on its own input tensor), end to end as a share of vkit's model-only
ceiling, and the peak RSS of vkit's main process and of its largest worker
(taken before the ceilings run). vkit and the peer each run in a fresh
subprocess, so each peak RSS is its own; both warm the model up on one batch
first. ``auto`` gates on 32 labelled validation videos, one clip each (``--validation``;
generated apart from the archive); the gate and int8's compilation happen before the clock starts.

The archive is labelled: video ``i`` moves its blocks by ``i % 3 + 1`` pixels
per frame and its label is ``i % 3 == 0`` (the slowest motion); the trained
model learnt that on other videos (its AUC on the archive is printed by
``benchmarks/precision_gate.py`` too). The AUC delta between precisions is
what the quality gate bounds.

The long-video table (``--long-minutes``, 0 skips it) decodes the frames the
X3D scorer samples from generated recordings at 640x360 and 1280x720 (25 fps,
a keyframe every 2 s, H.264 with B-frames), from the start up to the last
sampled frame ("sequential", as before) and by seeking to the keyframe before
each sampled stretch ("seek"), alternating the two ``--long-repeats`` times
(the fastest of each counts), checks that both give the same frames (so the
same scores), and prints seconds per video and video frames covered per second.
All samplings reach the last minute of the recording, so one sequential pass
up to the last wanted frame stands for each of them.

    python benchmarks/scoring.py --quick      # 10 and 40 videos of 64 px, 1 clip each, 1-minute long videos
    python benchmarks/scoring.py              # 50 and 500 videos of 160 px, 4 clips each, 10-minute long videos
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.75, 1.25, generator=gen)   # mmaction zero-inits some; make every branch count
    precise_bn(model, clips, batch=4)
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


def labelled_clips(paths: list[str], size: int, segments: int) -> tuple[Any, Any]:
    """Decoded clips exactly as vkit's scorer below takes them (``(N, 3, 13, size, size)``), and each clip's label."""
    import torch

    scorer = X3DScorer.__new__(X3DScorer)
    scorer.num_segments, scorer.size = segments, size
    clips = np.concatenate([scorer.decode(p) for p in paths])
    labels = np.repeat([label_of(p) for p in paths], segments)
    return torch.from_numpy(clips), torch.from_numpy(labels).float()


def fine_tune(model: Any, x: Any, y: Any, epochs: int, lr: float, batch: int = 8) -> list[float]:
    """Train the whole recognizer (AdamW, BCE on the one-class logit); the mean loss per epoch."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model.cls_head(model.backbone(x[idx])).flatten(), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    model.eval()
    return losses


def precise_bn(model: Any, x: Any, batch: int = 8) -> None:
    """Recompute every BatchNorm's running statistics over ``x`` (an exact average, as mmaction2's PreciseBN
    hook does): the running averages a short fine-tune leaves can be far from the final weights' statistics."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in x.split(batch):
            model.backbone(chunk)
    model.eval()
    for m in norms:
        m.momentum = 0.1


def trained_weights(folder: Path, size: int, videos: int, epochs: int, frames: int = 90, lr: float = 1e-3,
                    first: int = 0) -> tuple[Path, str]:
    """X3D-S fine-tuned on ``videos`` labelled videos (``make_archive(first=...)``, 2 clips each) with PreciseBN,
    saved as safetensors in ``folder`` (kept: a second call only loads); the path and a line saying what was done."""
    from vkit.core.checkpoint import save_checkpoint

    path = folder / f"x3d_s_trained_{videos}v_{size}px_{epochs}ep_from{first}.safetensors"
    if path.exists():
        return path, f"trained weights: {path} (cached)"
    (folder / "train").mkdir(parents=True, exist_ok=True)
    x, y = labelled_clips(make_archive(folder / "train", videos, size, frames, first=first), size, 2)
    model = build_recognizer(None)
    start = time.perf_counter()
    losses = fine_tune(model, x, y, epochs, lr)
    precise_bn(model, x)
    save_checkpoint(model, path, meta=dict(model=model_cfg(), benchmark="trained", epochs=epochs, videos=videos))
    return path, (f"fine-tuned X3D-S {epochs} epochs on {len(x)} clips of {videos} labelled videos in "
                  f"{time.perf_counter() - start:.0f} s (loss per epoch {', '.join(f'{v:.3f}' for v in losses)}), PreciseBN")


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
    supports = frozenset({"int8", "validation_clips"})   # declared capabilities (vkit.core.capabilities)
    int8_module = "model.backbone"               # the conv backbone --precision int8 quantizes

    def __init__(self, weights: Path, clips: int, size: int, validation: list[str] | None = None,
                 validation_clips: int | None = None) -> None:
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
        self.validation = validation or []
        self.clips_per_validation_video = min(validation_clips or clips, clips)

    def validation_clips(self) -> tuple[np.ndarray, np.ndarray]:
        """Clips of the labelled validation videos (``clips_per_validation_video`` of each, the middle ones)
        and each clip's label (its video's)."""
        keep, skip = self.clips_per_validation_video, (self.num_segments - self.clips_per_validation_video) // 2
        clips = [self.decode(p)[skip:skip + keep] for p in self.validation]
        labels = [label_of(p) for p in self.validation for _ in range(keep)]
        return np.concatenate(clips), np.asarray(labels)

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


def label_of(path: str) -> int:
    """The label of a generated video: 1 for the slowest motion (``i % 3 == 0``)."""
    return int(int(Path(path).stem[1:]) % 3 == 0)


def make_archive(root: Path, count: int, size: int, frames: int, first: int = 0) -> list[str]:
    """``count`` deterministic videos (moving blocks) of ``size`` x ``size``, ``frames`` frames at 15 fps."""
    from vkit.core.video import write_video

    paths = []
    for i in range(first, first + count):
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
    from vkit.workflows.scoring.score import ResultWriter, ScoreOptions, local_outcomes, plan_jobs

    from vkit.core.precision import apply_precision, archive_validation

    validation = json.loads(Path(args.val).read_text())
    if isinstance(validation, list):                                  # written by an earlier version
        validation = dict(paths=validation, clips=args.clips)
    base = X3DScorer(Path(args.weights), args.clips, args.size, validation["paths"], validation["clips"])
    began = time.perf_counter()
    lines: list[str] = []
    scorer, choice = apply_precision(base, args.precision, lambda: archive_validation(base, []), log=lines.append)
    prepare_s = time.perf_counter() - began
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
                precision=choice.precision, choice=lines, prepare_s=prepare_s,
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
        began_model, reps = time.perf_counter(), max(1, args.model_clips // x.shape[0])
        for _ in range(reps):
            model.cls_head(model.backbone(x))
        model_rate = reps * x.shape[0] / (time.perf_counter() - began_model)
    return dict(clips=clips, seconds=seconds, scores=scores, rss_main_mb=rss_main, rss_child_mb=rss_child,
                model_rate=model_rate, channels_last=bool(x.is_contiguous(memory_format=torch.channels_last_3d)))


def run_decode(paths: list[str], args: argparse.Namespace, scorer: X3DScorer) -> dict[str, Any]:
    """Decode-only ceiling: vkit's workers decoding every clip, no model."""
    from torch.utils.data import DataLoader

    from vkit.workflows.scoring.engine import VideoStream

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

    total = min(len(paths) * args.clips, args.model_clips)
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


# ----------------------------------------------------------------------------- long videos
def make_long_video(path: Path, width: int, height: int, minutes: float, fps: int = 25, keyint: int = 50) -> Path:
    """A recording of moving blocks, ``minutes`` long: H.264 (veryfast, B-frames) with a keyframe every ``keyint``."""
    import av
    from fractions import Fraction

    if path.exists():
        return path
    rng = np.random.default_rng(width)
    base = rng.integers(0, 255, size=(height // 40, width // 40, 3), dtype=np.uint8)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = keyint
        stream.options = {"preset": "veryfast", "crf": "28", "sc_threshold": "0", "bframes": "2"}
        block = np.ones((40, 40, 1), np.uint8)
        for t in range(int(minutes * 60 * fps)):
            frame = np.kron(np.roll(base, t // 5, axis=1), block)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def consecutive_indices(frames: int, segments: int, length: int) -> np.ndarray:
    """``length`` consecutive frames centred in each of ``segments`` equal segments (security-anomaly's sampling)."""
    centres = ((np.arange(segments) + 0.5) * frames / segments).astype(np.int64)
    return np.clip(centres[:, None] - length // 2 + np.arange(length)[None, :], 0, frames - 1).reshape(-1)


def long_videos(args: argparse.Namespace, work: Path) -> None:
    """Seconds per long video to decode the sampled frames: sequential vs seek, same frames."""
    from vkit.core.video import probe, read_clip

    print(f"\nlong videos ({args.long_minutes:g} min, 25 fps, keyframe every 2 s, H.264 with B-frames): decoding the "
          f"frames X3D samples (clips x {CLIP_LEN} frames / interval {INTERVAL}) and 32 runs of 8 consecutive frames "
          f"(security-anomaly's sampling). Sequential: one pass from the start to the last frame any sampling wants "
          f"(what decoding without seeking costs each of them; the fastest of --long-repeats); seek: per sampling, "
          f"alternated with the sequential passes", flush=True)
    print(f"{'video':>9} {'frames':>7} {'sampling':>9} {'sequential s':>12} {'seek s':>7} {'speed-up':>8} "
          f"{'seq frames/s':>12} {'seek frames/s':>13} {'equal':>5}", flush=True)
    for width, height in ((640, 360), (1280, 720)):
        path = make_long_video(work / f"long_{width}x{height}_{args.long_minutes:g}min.mp4", width, height,
                               args.long_minutes)
        info = probe(path)
        samplings = [(f"{n}x{CLIP_LEN}/{INTERVAL}", sample_indices(info.frames, n)) for n in sorted({args.clips, 32})]
        samplings.append(("32x8 run", consecutive_indices(info.frames, 32, 8)))
        union = np.unique(np.concatenate([indices for _, indices in samplings]))
        seq_times: list[float] = []
        seek_times: dict[str, list[float]] = {name: [] for name, _ in samplings}
        seeking: dict[str, np.ndarray] = {}
        for _ in range(args.long_repeats):          # alternated, so a busy moment hits both ways alike
            began = time.perf_counter()
            sequential = read_clip(path, union, frames=info.frames, seek=False)
            seq_times.append(time.perf_counter() - began)
            for name, indices in samplings:
                began = time.perf_counter()
                seeking[name] = read_clip(path, indices, frames=info.frames)
                seek_times[name].append(time.perf_counter() - began)
        position = {int(i): k for k, i in enumerate(union)}
        seq_s = min(seq_times)
        for name, indices in samplings:
            equal = bool(np.array_equal(sequential[[position[int(i)] for i in indices]], seeking[name]))
            seek_s = min(seek_times[name])
            print(f"{f'{width}x{height}':>9} {info.frames:>7} {name:>9} {seq_s:>12.2f} {seek_s:>7.2f} "
                  f"{seq_s / seek_s:>7.1f}x {info.frames / seq_s:>12.0f} {info.frames / seek_s:>13.0f} {str(equal):>5}",
                  flush=True)
        del sequential, seeking


# ----------------------------------------------------------------------------- parent
def measure(kind: str, paths: list[str], args: argparse.Namespace, work: Path, tag: str,
            precision: str = "fp32") -> dict[str, Any]:
    listing = work / f"paths_{tag}.json"
    listing.write_text(json.dumps(paths))
    db = work / f"{tag}_{kind}_{precision}.db"
    db.unlink(missing_ok=True)                                          # a fresh store: nothing is skipped
    cmd = [sys.executable, __file__, "--child", kind, "--paths", str(listing), "--weights", str(work / "x3d.safetensors"),
           "--db", str(db), "--clips", str(args.clips), "--size", str(args.size), "--workers", str(args.workers),
           "--batch-size", str(args.batch_size), "--precision", precision, "--model-clips", str(args.model_clips), "--val", str(work / "validation.json")]
    env = dict(os.environ, VKIT_CACHE=str(work / "cache"))             # auto decides afresh in each benchmark folder
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    print(f"  [{kind} {precision} on {len(paths)} videos: {time.perf_counter() - began:.0f} s in its subprocess]", flush=True)
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{kind} on {len(paths)} videos failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    result["rate"] = result["clips"] / result["seconds"]
    return result


def _auc(paths: list[str], scores: dict[str, list[float]]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([label_of(p) for p in paths], [float(np.mean(scores[p])) for p in paths]))


def compare(paths: list[str], vkit: dict[str, Any], peer: dict[str, Any]) -> dict[str, float]:
    """Max |diff| and Spearman of clip scores, and the AUC delta (vkit minus the peer) of per-video mean scores."""
    from scipy.stats import spearmanr

    a = np.concatenate([vkit["scores"][p] for p in paths])
    b = np.concatenate([peer["scores"][p] for p in paths])
    return dict(diff=float(np.max(np.abs(a - b))), spearman=float(spearmanr(a, b).statistic),
                auc_delta=_auc(paths, vkit["scores"]) - _auc(paths, peer["scores"]))


def cpu_header() -> list[str]:
    """The CPU, its reduced-precision flags and what each precision can do here."""
    import torch

    from vkit.core.precision import capabilities

    caps = capabilities()
    lines = [f"CPU: {caps.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads"]
    for precision in ("bf16", "int8"):
        ok, why = caps.supports(precision)
        lines.append(f"  {precision}: {'native' if ok else 'rows not run: ' + why}")
    return lines


def _row(n: int, precision: str, vkit: dict[str, Any], peer: dict[str, Any], cmp: dict[str, float]) -> str:
    used = vkit["precision"] if precision == vkit["precision"] else f"{precision}>{vkit['precision']}"
    return (f"{n:>6} {used:>11} {vkit['rate']:>9.2f} {peer['rate']:>9.2f} {vkit['rate'] / peer['rate']:>5.2f}x "
            f"{cmp['diff']:>9.2e} {cmp['spearman']:>8.5f} {cmp['auc_delta']:>+9.4f} {vkit['batch_size']:>5} "
            f"{vkit['decode']['rate']:>10.1f} {vkit['model']['rate']:>9.2f} "
            f"{vkit['rate'] / vkit['model']['rate'] * 100:>8.0f}% {peer['model_rate']:>10.2f} "
            f"{vkit['rss_main_mb']:>8.0f} {vkit['rss_child_mb']:>10.0f} {peer['rss_main_mb']:>8.0f}")


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
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"], choices=["fp32", "bf16", "int8", "auto"],
                        help="vkit's precisions, one row each (default fp32 auto)")
    parser.add_argument("--model-clips", type=int, default=MODEL_CLIPS, help="clips timed for each model-only rate")
    parser.add_argument("--long-minutes", type=float, default=None, help="long-video length (default 10; quick 1; 0 skips)")
    parser.add_argument("--long-repeats", type=int, default=2, help="timings per long video and way (the fastest counts)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the archive and stores (default: a temp dir)")
    parser.add_argument("--validation", default="32x1", metavar="VIDEOSxCLIPS",
                        help="auto's gate: labelled validation videos x clips of each (default 32x1, as vkit spreads "
                             "an archive's validation clips; with 8x4 the clips of one video overlap, their scores "
                             "nearly tie and rank swaps among them weigh in Spearman)")
    parser.add_argument("--model", choices=["trained", "calibrated"], default="trained",
                        help="X3D-S fine-tuned on separate labelled videos (default), or untrained with calibrated "
                             "BatchNorm and a spread head (the earlier benchmark's model)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--val", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = args.sizes or ([10, 40] if args.quick else [50, 500])
    args.clips = args.clips or (1 if args.quick else 4)
    args.size = args.size or (64 if args.quick else 160)
    args.long_minutes = args.long_minutes if args.long_minutes is not None else (1 if args.quick else 10)
    frames = args.frames or (40 if args.quick else 90)
    work = args.work or Path(tempfile.mkdtemp(prefix="vkit-bench-scoring-"))
    work.mkdir(parents=True, exist_ok=True)
    from vkit.core.checkpoint import save_checkpoint
    from vkit.core.precision import capabilities

    for line in cpu_header():
        print(line)
    caps = capabilities()
    runnable = [p for p in args.precisions if p in ("fp32", "auto") or caps.supports(p)[0]]
    if args.model == "trained":
        weights, line = trained_weights(work, args.size, 12 if args.quick else 48, 1 if args.quick else 4, frames,
                                        first=200_000)
        shutil.copyfile(weights, work / "x3d.safetensors")
        shutil.copyfile(weights.with_suffix(".json"), work / "x3d.json")
        print(line)
    else:
        save_checkpoint(build_recognizer(), work / "x3d.safetensors", meta=dict(model=model_cfg()))
    paths = make_archive(work / "archive", max(sizes), args.size, frames)
    val_videos, val_clips = (int(v) for v in args.validation.lower().split("x"))
    validation = make_archive(work / "validation", val_videos, args.size, frames, first=100_000)
    (work / "validation.json").write_text(json.dumps(dict(paths=validation, clips=val_clips)))
    print(f"archive {work / 'archive'}: {max(sizes)} videos {args.size}x{args.size}, {frames} frames; "
          f"{args.clips} clip(s) of {CLIP_LEN}x{args.size}x{args.size} per video; workers {args.workers}, "
          f"batch size {args.batch_size}; {val_videos} validation videos x {min(val_clips, args.clips)} clip(s) for auto's gate")
    header = (f"{'videos':>6} {'precision':>11} {'vkit c/s':>9} {'peer c/s':>9} {'ratio':>6} {'max|diff|':>9} "
              f"{'Spearman':>8} {'AUC delta':>9} {'batch':>5} {'decode c/s':>10} {'model c/s':>9} {'e2e/model':>9} "
              f"{'peer model':>10} {'vkit RSS':>8} {'worker RSS':>10} {'peer RSS':>8}")
    rows, lines = [], [header]
    for n in sizes:
        subset = paths[:n]
        peer = measure("peer", subset, args, work, f"n{n}")
        for precision in runnable:
            vkit = measure("vkit", subset, args, work, f"n{n}", precision)
            rows.append((n, precision, vkit, peer, compare(subset, vkit, peer)))
            lines.append(_row(*rows[-1]))
            print("\n".join(lines[-2:] if len(lines) == 2 else lines[-1:]), flush=True)
            if precision != "fp32":
                print("    " + " | ".join(vkit["choice"]), flush=True)
    print("\n".join(lines))
    for precision in args.precisions:
        if precision not in runnable:
            print(f"{precision}: not run ({caps.supports(precision)[1]})")
    for n, precision, vkit, _, _ in rows:
        if precision != "fp32":
            print(f"{n} videos, --precision {precision}: " + " | ".join(vkit["choice"])
                  + f" (prepared in {vkit['prepare_s']:.1f} s, before the clock)")
    for precision in runnable:
        mine = [(n, v) for n, p, v, _, _ in rows if p == precision]
        if len(mine) == 2:
            (small, rs), (large, rl) = mine
            print(f"{precision}: peak RSS growth {small} -> {large} videos: "
                  f"{(rl['rss_main_mb'] / rs['rss_main_mb'] - 1) * 100:+.1f}% (target < 10%)")
    targets = {"fp32": "fp32 target >= 1.4x at max|diff| <= 1e-4", "auto": "auto target >= 2x at AUC delta <= 0.005"}
    for precision, text in targets.items():
        mine = [(v, p, c) for _, q, v, p, c in rows if q == precision]
        if mine:
            worst = min(v["rate"] / p["rate"] for v, p, _ in mine)
            share = min(v["rate"] / v["model"]["rate"] for v, _, _ in mine)
            diff = max(c["diff"] for _, _, c in mine)
            delta = max(abs(c["auc_delta"]) for _, _, c in mine)
            print(f"{precision}: worst speed-up {worst:.2f}x, max|diff| {diff:.2e}, |AUC delta| {delta:.4f}, "
                  f"end to end {share * 100:.0f}% of model-only (target >= 90%) [{text}]")
    if rows:
        peer = rows[-1][3]
        layout = "channels_last_3d" if peer["channels_last"] else "contiguous"
        print(f"the peer's backbone input is {layout} (mmaction2's FormatShape transposes decoded NTHWC frames)")
    if args.long_minutes > 0:
        long_videos(args, work)


if __name__ == "__main__":
    main()
