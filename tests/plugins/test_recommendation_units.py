"""recommendation: ranking metrics on hand-computed rankings, BPR, readers (CSV, atomic fixture), split, serving."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vkit.plugins.recommendation.data import read_atomic, read_csv, split_interactions, user_dataset
from vkit.plugins.recommendation.metric import RankingMetric
from vkit.plugins.recommendation.models import BPRMF, VBPR, Popularity, TwoTower, bpr_loss
from vkit.plugins.recommendation.ranking import csr_gather, ranking_metrics, topk_items
from vkit.plugins.recommendation.serve import RecommendationService
from vkit.registry.errors import ConfigError, DataError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "recommendation" / "atomic"


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return indptr, np.array([i for r in rows for i in r], np.int64)


# ------------------------------------------------------------------ metrics
# Item scores 5 > 4 > 3 > 2 > 1 for items 0..4 (one-dimensional vectors).
ITEMS = torch.tensor([[5.0], [4.0], [3.0], [2.0], [1.0]])


def test_metrics_on_hand_computed_rankings():
    users = torch.tensor([0, 1])
    user_vecs = torch.ones(2, 1)
    truth = _csr([[1, 3], [4]])  # user 0 holds out items 1 and 3; user 1 item 4
    seen = _csr([[0], []])  # user 0 saw item 0: ranking 1, 2, 3, 4; user 1: 0, 1, 2, 3, 4
    m = ranking_metrics(user_vecs, ITEMS, users, truth, seen, ks=(2, 3))
    # user 0: top-2 [1, 2] -> 1 hit of 2; top-3 [1, 2, 3] -> 2 hits; user 1: no hit in the top 3.
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@3"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["hr@2"] == pytest.approx(0.5) and m["hr@3"] == pytest.approx(0.5)
    ideal2 = 1 + 1 / math.log2(3)
    assert m["ndcg@2"] == pytest.approx((1 / ideal2 + 0) / 2)
    assert m["ndcg@3"] == pytest.approx(((1 + 1 / math.log2(4)) / ideal2 + 0) / 2)
    # MRR over the full ranking: user 0's item 1 is first (1/1), user 1's item 4 is fifth (1/5).
    assert m["mrr"] == pytest.approx((1 + 1 / 5) / 2)
    # top-2 lists [1, 2] and [0, 1] cover items {0, 1, 2} of 5.
    assert m["coverage@2"] == pytest.approx(3 / 5)
    assert m["users"] == 2


def test_metrics_on_a_candidate_slice_ignore_truth_outside_it():
    truth = _csr([[1, 3]])
    m = ranking_metrics(torch.ones(1, 1), ITEMS, torch.tensor([0]), truth, None, ks=(1, 2), candidates=[2, 3, 4])
    # candidates ranked 2, 3, 4; only item 3 counts, at rank 2.
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0
    assert m["mrr"] == pytest.approx(0.5)


def test_users_without_truth_are_not_counted():
    m = ranking_metrics(torch.ones(2, 1), ITEMS, torch.tensor([0, 1]), _csr([[0], []]), None, ks=(1,))
    assert m["users"] == 1 and m["recall@1"] == 1.0


def test_topk_excludes_seen_items_and_matches_a_full_sort():
    g = torch.Generator().manual_seed(0)
    user_vecs, item_vecs = torch.randn(37, 4, generator=g), torch.randn(50, 4, generator=g)
    seen = _csr([[i % 50, (3 * i) % 50] for i in range(37)])
    scores, top = topk_items(user_vecs, item_vecs, 5, seen=seen, chunk=8)  # several chunks
    full = user_vecs @ item_vecs.T
    owner, cols = csr_gather(seen, torch.arange(37))
    full[owner, cols] = -torch.inf
    assert torch.equal(top, torch.topk(full, 5, dim=1).indices)
    for u in range(37):
        assert not set(top[u].tolist()) & {u % 50, (3 * u) % 50}


def test_ranking_metric_matches_the_full_ranking_on_lists():
    metric = RankingMetric(ks=(2,))
    metric.process({}, [dict(user=0, items=[1, 2, 3], truth=[1, 3]), dict(user=1, items=[0, 1, 2], truth=[4])])
    out = metric.evaluate(size=2)
    assert out["recall@2"] == pytest.approx(0.25) and out["hr@2"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="fewer than K"):
        metric = RankingMetric(ks=(5,))
        metric.process({}, [dict(user=0, items=[1, 2], truth=[1])])
        metric.evaluate(size=1)


# ------------------------------------------------------------------ models
def _toy(cls: type, **kwargs):
    # users 0, 1 like items 0-2; users 2, 3 like items 3-5
    history = [[0, 1], [1, 2], [3, 4], [4, 5]]
    indptr, indices = _csr(history)
    content = np.eye(6, 2, dtype=np.float32)[[0, 0, 0, 1, 1, 1]] if cls.uses_content else None
    model = cls(num_users=4, num_items=6, num_interactions=len(indices), content_dim=2 if content is not None else 0,
                **kwargs)
    return model.set_data(indptr, indices, content), indptr, indices


def test_bpr_loss_decreases_and_positives_rise_above_negatives():
    torch.manual_seed(0)
    model, indptr, indices = _toy(BPRMF, dim=4)
    users = torch.repeat_interleave(torch.arange(4), torch.as_tensor(np.diff(indptr)))
    items = torch.as_tensor(indices)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(150):
        loss = model(users, items, mode="loss")["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    with torch.no_grad():
        scores = model(torch.arange(4), mode="tensor")
    assert float(scores[0, 0]) > float(scores[0, 4]) and float(scores[3, 5]) > float(scores[3, 1])


def test_negatives_are_never_the_users_own_training_items():
    # issue 21 item 18: negatives were drawn from every item with training interactions, the user's own
    # positives included (a positive drawn as a negative pulls the model away from the user's taste).
    # User 0 saw items 0-4, user 1 items 3-5: user 0's only true negative is item 5, user 1's are 0-2.
    indptr, indices = _csr([[0, 1, 2, 3, 4], [3, 4, 5]])
    model = BPRMF(num_users=2, num_items=6, num_interactions=len(indices), dim=2, num_negatives=50)
    model.set_data(indptr, indices)
    torch.manual_seed(0)
    neg = model.sample_negatives(torch.tensor([0, 1] * 20))
    assert neg.shape == (40, 50)
    assert set(neg[0::2].flatten().tolist()) == {5}
    assert set(neg[1::2].flatten().tolist()) == {0, 1, 2}  # uniform over the rest: all three drawn
    # the exclusion follows the buffers: a checkpoint with another history (user 0 saw items 1-5)
    other = BPRMF(num_users=2, num_items=6, num_interactions=len(indices), dim=2, num_negatives=50)
    other.set_data(*_csr([[1, 2, 3, 4, 5], [0, 1, 2]]))
    model.load_state_dict(other.state_dict())
    assert set(model.sample_negatives(torch.tensor([0, 0])).flatten().tolist()) == {0}


def test_a_user_who_saw_every_item_still_gets_negatives():
    model = BPRMF(num_users=1, num_items=3, num_interactions=3, dim=2, num_negatives=4).set_data(*_csr([[0, 1, 2]]))
    assert model.sample_negatives(torch.tensor([0])).shape == (1, 4)  # nothing to exclude to: no endless redraw


def test_bpr_regularises_the_rows_each_triple_touches():
    # issue 21 item 18: the factors were regularised only by AdamW's decoupled decay (lr x 1e-4 per step, nil);
    # BPR-Opt adds reg/2 x (|p_u|^2 + |q_i|^2 + b_i^2 + |q_j|^2 + b_j^2) per (user, positive, negative) triple.
    model, *_ = _toy(BPRMF, dim=3, reg=0.5)
    with torch.no_grad():
        model.item_bias.weight.normal_()
    users, items = torch.tensor([0, 2]), torch.tensor([1, 4])
    torch.manual_seed(1)
    loss = model(users, items, mode="loss")["loss"]
    torch.manual_seed(1)
    neg = model.sample_negatives(users)[:, 0]
    p, qi, qj = model.user_emb(users), model.item_emb(items), model.item_emb(neg)
    bi, bj = model.item_bias(items)[:, 0], model.item_bias(neg)[:, 0]
    x = bi - bj + (p * (qi - qj)).sum(-1)
    penalty = (p.pow(2).sum(-1) + qi.pow(2).sum(-1) + bi**2 + qj.pow(2).sum(-1) + bj**2).mean()
    expected = -F.logsigmoid(x).mean() + 0.25 * penalty
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()
    untouched = [u for u in range(4) if u not in (0, 2)]
    assert float(model.user_emb.weight.grad[untouched].abs().sum()) == 0.0  # only sampled rows are shrunk
    with pytest.raises(ConfigError, match="reg=-1"):
        BPRMF(num_users=2, num_items=3, num_interactions=1, reg=-1)


def test_vbpr_regularises_its_visual_user_factors_too():
    torch.manual_seed(0)
    model, *_ = _toy(VBPR, dim=2, visual_dim=2, reg=1.0)
    users, items = torch.tensor([0]), torch.tensor([1])
    neg = model.sample_negatives(users)
    before = float(model.penalty(users, items, neg).detach())
    with torch.no_grad():
        model.user_visual.weight[0] += 1.0
    assert float(model.penalty(users, items, neg).detach()) > before + 0.5  # theta_u's norm counts


def test_bpr_loss_value():
    assert float(bpr_loss(torch.tensor([2.0]), torch.tensor([0.0]))) == pytest.approx(-math.log(1 / (1 + math.exp(-2))))


def test_popularity_ranks_by_training_counts_and_has_nothing_to_train():
    model, *_ = _toy(Popularity)  # counts: item 1 and 4 twice, the others once
    _, top = model.recommend(torch.tensor([0]), 2, exclude_seen=False)
    assert set(top[0].tolist()) == {1, 4}
    with pytest.raises(ConfigError, match="nothing to train"):
        model(torch.tensor([0]), torch.tensor([1]), mode="loss")


@pytest.mark.parametrize("cls", [VBPR, TwoTower])
def test_content_models_need_content(cls):
    with pytest.raises(ConfigError, match="content"):
        cls(num_users=2, num_items=3, num_interactions=1, content_dim=0)


def test_models_predict_top_lists_without_seen_items_and_pass_truth_on():
    model, *_ = _toy(TwoTower, dim=4, hidden=4, num_negatives=2, predict_k=3)
    out = model(torch.tensor([0, 2]), truth=torch.tensor([[2, -1], [5, 3]]), mode="predict")
    assert out[0]["truth"] == [2] and out[1]["truth"] == [5, 3]
    assert not {0, 1} & set(out[0]["items"]) and not {3, 4} & set(out[1]["items"])


# ------------------------------------------------------------------ readers and split
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_reader_reports_bad_rows_and_keeps_the_rest(tmp_path):
    items = _write(tmp_path / "items.csv", "item_id,video\na,videos/a.mp4\nb,\nc,videos/c.mp4\n")
    inter = _write(tmp_path / "interactions.csv", "user_id,item_id,timestamp\n"
                   "u1,a,20\n"      # row 2
                   "u1,b,10\n"      # row 3: earlier than row 2 (sorted)
                   "u1,a,30\n"      # row 4: duplicate of row 2
                   "u2,zz,5\n"      # row 5: unknown item
                   "u2,b,noon\n"    # row 6: bad timestamp
                   "1.5,a,7\n"      # row 7: float id
                   ",a,8\n"         # row 8: empty id
                   "7,c,9\n")       # row 9: an int id is fine
    data = read_csv(inter, items)
    reasons = {p["item_id"]: p["reason"] for p in data.problems}
    assert set(reasons) == {"interactions.csv:4", "interactions.csv:5", "interactions.csv:6", "interactions.csv:7",
                            "interactions.csv:8"}
    assert "duplicate" in reasons["interactions.csv:4"] and "unknown item 'zz'" in reasons["interactions.csv:5"]
    assert "timestamp" in reasons["interactions.csv:6"] and "neither a string nor an int" in reasons["interactions.csv:7"]
    assert data.user_ids == ["7", "u1"] and data.item_ids == ["a", "b", "c"]
    u1 = data.user_ids.index("u1")
    assert [data.item_ids[i] for i in data.items[data.users == u1]] == ["b", "a"]  # time order
    assert any("out of time order" in n for n in data.notes)
    assert data.item_videos[0] == str((tmp_path / "videos/a.mp4").resolve()) and data.item_videos[1] is None


def test_csv_reader_names_missing_columns(tmp_path):
    inter = _write(tmp_path / "i.csv", "user,item\n1,2\n")
    with pytest.raises(DataError, match=r"i.csv: missing column\(s\) \['user_id', 'item_id', 'timestamp'\]"):
        read_csv(inter)


def test_atomic_fixture_reads_recbole_files_and_features():
    data = read_atomic(FIXTURE)
    assert data.item_ids == ["i1", "i2", "i3", "i4", "i5"]  # the .item catalogue, in file order
    assert data.user_ids == ["u1", "u2", "u3"]
    assert data.item_features.shape == (5, 4)
    assert np.allclose(data.item_features[2], np.load(FIXTURE / "image_feat.npy")[2])
    assert len(data.users) == 11 and data.labels is None
    assert [p["item_id"] for p in data.problems] == ["tiny.inter:12"]  # an item not in the catalogue


def test_leave_last_out_split_and_cold_items():
    data = read_atomic(FIXTURE)
    split = split_interactions(data, "leave_last_out", val_per_user=1, test_per_user=1)
    u1 = data.user_ids.index("u1")
    times = data.timestamps[data.users == u1]
    assert data.timestamps[split.test][data.users[split.test] == u1] == times.max()
    assert len(split.test) == 3 and len(split.val) == 3
    trained = set(data.items[split.train].tolist())
    assert set(split.cold_items.tolist()) == set(range(data.num_items)) - trained
    test = user_dataset(split, "test")
    assert len(test) == 3 and test[0]["truth"].shape == (1,)


def test_split_modes_are_checked():
    data = read_atomic(FIXTURE)
    with pytest.raises(ConfigError, match="expected one of"):
        split_interactions(data, "random")
    with pytest.raises(ConfigError, match="x_label"):
        split_interactions(data, "predefined")
    temporal = split_interactions(data, "temporal", val_fraction=0.2, test_fraction=0.2)
    assert data.timestamps[temporal.test].min() >= data.timestamps[temporal.train].max()


def test_mmrec_plain_header_with_x_label(tmp_path):
    _write(tmp_path / "baby.inter", "userID\titemID\trating\ttimestamp\tx_label\n"
           "0\t0\t5\t1\t0\n0\t1\t5\t2\t0\n1\t1\t4\t3\t0\n1\t2\t4\t4\t2\n0\t2\t3\t5\t1\n")
    np.save(tmp_path / "image_feat.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    data = read_atomic(tmp_path)
    split = split_interactions(data, "predefined")
    assert len(split.train) == 3 and len(split.val) == 1 and len(split.test) == 1
    assert data.item_features.shape == (3, 2)


# ------------------------------------------------------------------ serving
def test_recommend_excludes_seen_items_and_falls_back_to_popularity_for_unknown_users():
    model, *_ = _toy(VBPR, dim=4, visual_dim=2)
    service = RecommendationService(model, ["u0", "u1", "u2", "u3"], [f"v{i}" for i in range(6)])
    result = service.recommend("u0", k=4)
    ids = [r["item_id"] for r in result["items"]]
    assert result["known"] and result["note"] is None and len(ids) == 4
    assert not {"v0", "v1"} & set(ids)  # u0's history
    assert all(set(r["because"]) <= {"v0", "v1"} and r["because"] for r in result["items"])
    unknown = service.recommend("nobody", k=2)
    assert not unknown["known"] and "unknown user 'nobody'" in unknown["note"] and unknown["model"] == "Popularity"
    assert {r["item_id"] for r in unknown["items"]} == {"v1", "v4"}  # the two most popular
    with pytest.raises(ConfigError, match="-k 0"):
        service.recommend("u0", k=0)


def test_batch_recommendations_equal_one_by_one():
    model, *_ = _toy(TwoTower, dim=4, hidden=4, num_negatives=2)
    torch.nn.init.normal_(model.item_id.weight)  # no ties (items 3-5 share their content): the order is defined
    service = RecommendationService(model, ["u0", "u1", "u2", "u3"], [f"v{i}" for i in range(6)])
    users = ["u2", "nobody", "u0"]
    assert service.recommend_many(users, k=3) == [service.recommend(u, k=3) for u in users]


@pytest.mark.parametrize("rows,width,k", [(3, 100_003, 10), (4, 5000, 20), (2, 2100, 10), (5, 30_000, 50)])
def test_two_pass_row_topk_equals_torch_topk(rows, width, k):
    from vkit.plugins.recommendation.ranking import row_topk

    x = torch.randn(rows, width, generator=torch.Generator().manual_seed(width))
    x[0, : width // 2] = -torch.inf  # seen items
    values, columns = row_topk(x, k)
    expected = torch.topk(x, k, dim=1)
    assert torch.equal(values, expected.values) and torch.equal(columns, expected.indices)
