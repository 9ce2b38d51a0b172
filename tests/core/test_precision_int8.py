"""int8 static quantization of a scorer's conv backbone (PT2E + x86 Inductor), calibrated and cached."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "workflows"))
import test_score_support as support  # noqa: E402

from vkit.core.int8 import int8_available  # noqa: E402
from vkit.core.precision import Capabilities, PrecisionScorer, Validation, apply_precision, precision_sha256  # noqa: E402
from vkit.registry.errors import ConfigError  # noqa: E402

INT8_CPU = Capabilities("test CPU", ("avx512_vnni",), False, "no bf16", True, "")


def _scorer(tmp_path: Path, module: str | None = "model") -> support.ConvScorer:
    scorer = support.ConvScorer(support.make_checkpoint(tmp_path / "model.safetensors"))
    if module is not None:
        scorer.supports = frozenset({"int8"})  # declared (vkit.core.capabilities)
        scorer.int8_module = module
    return scorer


def test_int8_needs_a_named_backbone_and_calibration_clips(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="int8_module"):
        apply_precision(_scorer(tmp_path, None), "int8", Validation(torch.rand(4, 3, 4, 32, 32)), caps=INT8_CPU,
                        cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="no attribute 'backbone'"):
        apply_precision(_scorer(tmp_path, "model.backbone"), "int8", Validation(torch.rand(4, 3, 4, 32, 32)),
                        caps=INT8_CPU, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs validation clips to calibrate"):
        apply_precision(_scorer(tmp_path), "int8", None, caps=INT8_CPU, cache_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not int8_available()[0], reason=int8_available()[1])
def test_int8_scores_match_fp32_and_the_calibration_is_cached(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    clips = torch.rand(16, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    quantized, choice = apply_precision(scorer, "int8", Validation(clips), caps=INT8_CPU, cache_dir=tmp_path / "cache")
    assert choice.precision == "int8" and isinstance(quantized, PrecisionScorer)
    assert quantized.model_sha256 == precision_sha256(scorer.model_sha256, "int8")
    assert (tmp_path / "cache" / f"{scorer.model_sha256}.int8.safetensors").is_file()
    with torch.inference_mode():
        reference = scorer.score(clips)
        five = quantized.score(clips[:5])                 # compiled for 4: one full batch, one padded
        one = quantized.score(clips[7:8])
    assert five.shape == (5,) and one.shape == (1,)
    assert torch.allclose(five, reference[:5], atol=0.01) and torch.allclose(one, reference[7:8], atol=0.01)
    assert not torch.equal(five, reference[:5])           # it really ran the int8 graph
    with torch.inference_mode():                          # the fp32 module is back in place after each call
        assert torch.equal(scorer.score(clips[:5]), reference[:5])
