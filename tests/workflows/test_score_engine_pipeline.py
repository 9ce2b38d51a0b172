"""The model process's side of `vkit score`: clips arrive in the batch layout, one video's clips are not copied."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.workflows.scoring.engine import ClipBatcher, prepare_video, score_items  # noqa: E402


class Recording(support.ConvScorer):
    """Decodes NTHWC frames into a transposed (S, C, T, H, W) view, as most scorers do; records each batch."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(checkpoint)
        self.batches: list[torch.Tensor] = []

    def decode(self, path: str) -> np.ndarray:
        from vkit.core.sampling import sample_segments

        frames = sample_segments(path, support.SEGMENTS, support.FRAMES, support.SIZE)   # (S, T, H, W, 3)
        return frames.transpose(0, 4, 1, 2, 3).astype(np.float32) / 255.0             # channels-last memory

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        self.batches.append(clips)
        return super().score(clips)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pipeline")
    files = support.make_archive(root / "archive", good=3, bad=False)
    return dict(videos=[str(p) for p in files.values()], ckpt=support.make_checkpoint(root / "model.safetensors"))


def test_prepared_clips_are_in_the_batch_layout_with_the_same_values(setup: dict[str, Any]) -> None:
    scorer = Recording(setup["ckpt"])
    item = prepare_video(setup["videos"][0], None, scorer)
    tensor = item["tensor"]
    assert tensor.dtype == torch.float32 and tensor.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(tensor, torch.as_tensor(np.ascontiguousarray(scorer.decode(setup["videos"][0]))))
    scorer.memory_format = "contiguous"                         # a scorer that wants NCTHW gets NCTHW
    assert prepare_video(setup["videos"][0], None, scorer)["tensor"].is_contiguous()


def test_one_videos_clips_go_uncopied_and_scores_do_not_depend_on_batching(setup: dict[str, Any]) -> None:
    scorer = Recording(setup["ckpt"])
    items = [prepare_video(v, None, scorer) for v in setup["videos"]]
    storages = {item["tensor"].untyped_storage().data_ptr() for item in items}
    with torch.inference_mode():
        reference = {i["path"]: scorer.score(i["tensor"]).numpy() for i in items}
    for size in (2, 3, 4):                     # 4 clips per video: 2 and 4 align with videos, 3 straddles them
        scorer.batches.clear()
        outcomes = list(score_items(iter([dict(i, tensor=i["tensor"]) for i in items]), ClipBatcher(scorer, size)))
        for outcome in outcomes:
            got = [s["score"] for s in outcome["scores"]]
            np.testing.assert_allclose(got, reference[outcome["path"]], rtol=0, atol=1e-6)
        uncopied = [b for b in scorer.batches if b.untyped_storage().data_ptr() in storages]
        if size in (2, 4):
            assert len(uncopied) == len(scorer.batches)   # every batch a view of one video's clips
        else:
            assert len(uncopied) < len(scorer.batches)    # batches spanning two videos are copied together
        assert all(b.is_contiguous(memory_format=torch.channels_last_3d) for b in scorer.batches)
