"""education-engagement components: the ordinal head and metric, side-signal fusion, timelines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vkit.core.ordinal import OrdinalHead, balanced_class_weights, ordinal_decision, quadratic_weighted_kappa
from vkit.plugins.education.timeline import low_stretches, teacher_summary
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import HEADS, METRICS, MODELS

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread



# ---------------------------------------------------------------- ordinal head
def test_predicted_level_is_monotone_in_the_cumulative_logits() -> None:
    torch.manual_seed(0)
    head = OrdinalHead(in_dim=1, num_classes=4)
    with torch.no_grad():
        head.score.weight.fill_(1.0)
        head.score.bias.zero_()
        head.gaps.copy_(torch.tensor([-3.0, 2.0]))  # uneven (but ordered) thresholds
    x = torch.linspace(-8, 8, 401)[:, None]
    with torch.no_grad():
        cum = head.cumulative_logits(x)
        probs = head(x).exp()
    assert torch.all(cum[:, :-1] >= cum[:, 1:])  # P(y >= k) never increases with k
    assert torch.allclose(probs.sum(1), torch.ones(401), atol=1e-5) and (probs >= 0).all()
    levels = torch.as_tensor(ordinal_decision(probs.numpy(), "median"))
    coral = (torch.sigmoid(cum) > 0.5).sum(1)
    assert torch.equal(levels, coral)  # the median level is CORAL's count of P(y >= k) > 0.5
    assert torch.all(levels[1:] >= levels[:-1]) and levels[0] == 0 and levels[-1] == 3  # monotone in the score


def test_ordinal_head_learns_ordered_levels_and_weights_rare_ones() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    score = x[:, 0] * 2
    labels = torch.bucketize(score, torch.tensor([-1.5, 0.0, 1.5]))
    head = HEADS.build(dict(type="OrdinalHead", num_classes=4, class_weights=[1.0, 1.0, 1.0, 1.0]), default_args=dict(in_dim=4))
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss = head.loss(head(x), labels)
        loss.backward()
        opt.step()
    pred = ordinal_decision(head(x).exp().detach().numpy())
    assert np.mean(pred == labels.numpy()) > 0.9
    assert torch.all(torch.diff(head.thresholds()) > 0)
    weighted = OrdinalHead(in_dim=4, num_classes=4, class_weights=[10.0, 1.0, 1.0, 1.0])
    plain = OrdinalHead(in_dim=4, num_classes=4)
    weighted.load_state_dict({**plain.state_dict(), "class_weights": weighted.class_weights})
    only0 = torch.tensor([0, 2, 2, 2])
    lp = plain(x[:4])
    assert weighted.loss(lp, only0) != plain.loss(lp, only0)  # the weights change the loss


def test_ordinal_head_rejects_bad_config_and_labels() -> None:
    with pytest.raises(ConfigError, match="class_weights: expected 4 finite weights > 0"):
        OrdinalHead(in_dim=8, num_classes=4, class_weights=[1, 2])
    with pytest.raises(ConfigError, match="num_classes: expected an int >= 2"):
        OrdinalHead(in_dim=8, num_classes=1)
    head = OrdinalHead(in_dim=8, num_classes=4)
    with pytest.raises(DataError, match=r"labels must be 2 levels in \[0, 3\]"):
        head.loss(head(torch.randn(2, 8)), torch.tensor([0, 4]))
    with pytest.raises(DataError, match=r"features of shape \(2, 5\), expected \(N, 8\)"):
        head(torch.randn(2, 5))


def test_balanced_class_weights_favour_rare_levels() -> None:
    weights = balanced_class_weights([2] * 45 + [3] * 38 + [1] * 12 + [0] * 5, 4, power=1.0)
    assert weights[0] > weights[1] > weights[3] > weights[2]
    counts = np.array([5, 12, 45, 38])
    assert np.isclose((np.array(weights) * counts).sum() / counts.sum(), 1.0)


# ---------------------------------------------------------------- metric
def test_qwk_equals_the_hand_computed_case() -> None:
    # truth [0,1,2,3], prediction [0,1,3,3]: observed disagreement sum w*O = w(2,3) = 1/9;
    # expected: rows [1,1,1,1], columns [1,1,0,2], E = r c / 4 -> sum w*E = (14 + 6 + 2*14) / 36 = 4/3
    assert quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 3, 3], 4) == pytest.approx(1 - (1 / 9) / (4 / 3))  # 11/12
    metric = METRICS.build(dict(type="OrdinalMetric", num_classes=4, level_names=("very low", "low", "high", "very high")))
    eye = torch.eye(4)
    samples = [dict(probs=eye[p], label=t, case_id=f"c{i}") for i, (t, p) in enumerate(zip([0, 1, 2, 3], [0, 1, 3, 3]))]
    metric.process({}, samples)
    out = metric.evaluate(4)
    assert set(out) == {"accuracy", "macro_f1", "qwk", "mae"}
    assert out["qwk"] == pytest.approx(11 / 12) and out["accuracy"] == 0.75 and out["mae"] == 0.25
    assert out["macro_f1"] == pytest.approx((1 + 1 + 0 + 2 / 3) / 4)
    assert metric.last_confusion.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    rows = metric.prediction_rows()
    assert rows[2]["item_id"] == "c2" and rows[2]["label"] == 2 and rows[2]["prediction"] == 3
    (section,) = metric.report_sections()
    assert section.table[2]["true level"] == "2 high" and section.table[2]["pred 3"] == 1 and section.table[2]["recall"] == 0.0


def test_decision_rules_differ_where_they_should() -> None:
    probs = np.array([[0.3, 0.1, 0.3, 0.3], [0.45, 0.0, 0.0, 0.55]])
    assert ordinal_decision(probs, "median").tolist() == [2, 3]
    assert ordinal_decision(probs, "argmax").tolist() == [0, 3]
    assert ordinal_decision(probs, "expected").tolist() == [2, 2]
    with pytest.raises(ConfigError, match="decision rule 'mode'"):
        ordinal_decision(probs, "mode")


# ---------------------------------------------------------------- fusion with side signals
def test_side_signals_that_carry_the_label_change_predictions_through_fusion() -> None:
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="VideoModel",
        backbones=dict(video=dict(type="TinyC3D", widths=(2,), num_frames=2, input_size=(4, 4)),
                       signals=dict(type="SignalMLP", in_channels=2, widths=(8,))),
        fusion=dict(type="Concat", dim=8), head=dict(type="OrdinalHead", num_classes=4)))
    n = 64
    labels = torch.arange(n) % 4
    video = torch.randn(1, 3, 2, 4, 4).expand(n, -1, -1, -1, -1)  # the same clip for all: carries nothing
    signals = torch.stack([labels.float() - 1.5, torch.randn(n)], 1).view(n, 2, 1, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    samples = [dict(label=int(v), case_id=str(i)) for i, v in enumerate(labels)]
    for _ in range(150):
        opt.zero_grad()
        loss = model(dict(video=video, signals=signals), samples, mode="loss")["loss"]
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(dict(video=video, signals=signals)), 1).numpy()
        flipped = signals.clone()
        flipped[:, 0] = -flipped[:, 0]  # the same clips with the label signal reversed
        probs_flipped = torch.softmax(model(dict(video=video, signals=flipped)), 1).numpy()
    pred = ordinal_decision(probs)
    assert np.mean(pred == labels.numpy()) > 0.9  # learnt from the signals alone
    assert np.mean(ordinal_decision(probs_flipped) == 3 - labels.numpy()) > 0.9  # predictions follow the signals


# ---------------------------------------------------------------- timelines
def test_the_scorer_samples_training_length_clips_centred_in_each_segment() -> None:
    from vkit.core.sampling import FrameSampler  # the scorer's sampler (tests/core/test_sampling.py has the rule)

    grid = FrameSampler("segments", 24, 16, clip_seconds=2.0).indices(384, fps=8.0)
    assert grid.shape == (24, 16)
    assert grid[0].tolist() == list(range(16)) and grid[-1].tolist() == list(range(368, 384))
    sparse = FrameSampler("segments", 10, 4, clip_seconds=2.0).indices(8000, fps=8.0)
    assert sparse[0].tolist() == [394, 398, 402, 406]  # 2 s (16 frames) around the centre 400, every 4th frame


def test_low_stretches_need_min_seconds_and_teacher_summary_finds_the_shared_drop() -> None:
    levels = [3, 0.4, 0.6, 0.5, 2.5, 1.0, 2.9]
    events = low_stretches(levels, seconds=2.0, low_level=1.5, min_seconds=4.0)
    assert [(e["start"], e["end"]) for e in events] == [(2.0, 8.0)]  # the single low segment at 10-12 s is too short
    assert events[0]["kind"] == "low-engagement" and events[0]["level"] == pytest.approx(0.5)
    # core's one rule: a level equal to low_level is low (the old rule was strictly below)
    assert [(e["start"], e["end"]) for e in low_stretches([1.5, 1.5, 3.0], 2.0, 1.5, 4.0)] == [(0.0, 4.0)]
    text = teacher_summary({"a": [(750.0, 910.0)], "b": [(760.0, 900.0)], "c": [], "d": [(100.0, 110.0)]})
    assert text == "attention fell from 12:40 to 15:00 for 2 of 4 learners"
    assert teacher_summary({"a": [], "b": []}).startswith("attention held")


@pytest.mark.parametrize("stretches, period", [
    # the README's rule: the longest period with the most learners low, not the first one found
    ({"a": [(2.0, 6.0), (10.0, 22.0)], "b": [(2.0, 6.0), (10.0, 22.0)], "c": []}, "00:10 to 00:22 for 2 of 3"),
    # a longer stretch with fewer learners low loses to a shorter one with more
    ({"a": [(0.0, 60.0)], "b": [(40.0, 44.0)], "c": [(40.0, 44.0)]}, "00:40 to 00:44 for 3 of 3"),
    # two equally long periods: the earlier
    ({"a": [(2.0, 6.0), (10.0, 14.0)], "b": [(2.0, 6.0), (10.0, 14.0)]}, "00:02 to 00:06 for 2 of 2"),
    # back-to-back stretches of one learner make one unbroken period
    ({"a": [(2.0, 6.0), (6.0, 20.0)], "b": [(0.0, 30.0)], "c": [(1.0, 4.0)]}, "00:02 to 00:04 for 3 of 3"),
    ({"a": [(2.0, 6.0), (6.0, 20.0)], "b": [(0.0, 30.0)]}, "00:02 to 00:20 for 2 of 2"),
])
def test_teacher_summary_names_the_longest_period_with_the_most_learners_low(stretches, period) -> None:
    assert teacher_summary(stretches) == f"attention fell from {period} learners"
