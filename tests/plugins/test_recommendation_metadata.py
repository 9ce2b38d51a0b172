"""recommendation metadata: the generator's partial genre signal, the items.csv reader, fusion in the two-tower model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vkit.plugins.recommendation.metadata import metadata_features, read_item_metadata, tokens
from vkit.plugins.recommendation.models import TwoTower
from vkit.plugins.recommendation.synthetic import GENRES, item_metadata
from vkit.registry.errors import ConfigError


def test_generated_metadata_carries_some_but_not_all_of_the_genre():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    genres = np.arange(180) % len(GENRES)

    def accuracy(signal: float) -> float:
        feats, mask = metadata_features([item_metadata(0, i, int(g), signal) for i, g in enumerate(genres)], 64)
        assert mask.all()
        return cross_val_score(LogisticRegression(max_iter=2000), feats, genres, cv=3).mean()

    some, none = accuracy(0.5), accuracy(0.0)
    assert 1.5 / len(GENRES) < some < 0.8  # informative, far from giving the genre away
    assert none < some - 0.08  # the signal comes from the genre words
    assert item_metadata(3, 7, 2) == item_metadata(3, 7, 2)


def test_reader_and_features(tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,video,title,tags,duration\n"
                     "a,a.mp4,Rain storm today,hd|rain,61.5\n"
                     "b,b.mp4,,,\n"
                     "c,c.mp4,City,4k,soon\n")
    meta, problems = read_item_metadata(items)
    assert meta["a"] == dict(title="Rain storm today", tags=["hd", "rain"], duration=61.5) and "b" not in meta
    assert meta["c"]["duration"] is None and meta["c"]["tags"] == ["4k"]
    assert len(problems) == 1 and problems[0]["item_id"] == "items.csv:4" and "'soon' is not a number" in problems[0]["reason"]
    assert tokens(meta["a"]) == ["rain", "storm", "today", "tag:hd", "tag:rain"]
    feats, mask = metadata_features([meta.get("a"), meta.get("b"), meta.get("c")], buckets=16)
    assert feats.shape == (3, 17) and mask.tolist() == [True, False, True] and not feats[1].any()
    np.testing.assert_allclose(np.linalg.norm(feats[[0, 2], :16], axis=1), 1.0, rtol=1e-6)
    assert feats[0, 16] == 0.0 and feats[2, 16] == 0.0  # one known duration: standardised to 0
    (tmp_path / "plain.csv").write_text("item_id,video\na,a.mp4\n")
    assert read_item_metadata(tmp_path / "plain.csv") == ({}, [])
    with pytest.raises(ConfigError, match="buckets"):
        metadata_features([None], buckets=0)


def _toy(fusion: dict | None, seed: int = 0) -> tuple[TwoTower, torch.Tensor, torch.Tensor]:
    """8 users, 12 items in 2 groups; the content is the same for every item, the metadata names the group."""
    torch.manual_seed(seed)
    group = np.arange(12) % 2
    history = [[i for i in range(12) if group[i] == u % 2][:4] for u in range(8)]
    indptr = np.concatenate([[0], np.cumsum([len(h) for h in history])])
    indices = np.array([i for h in history for i in h])
    model = TwoTower(dim=8, hidden=16, num_negatives=4, use_ids=False, fusion=fusion, num_users=8, num_items=12,
                     num_interactions=len(indices), content_dim=3, metadata_dim=2 if fusion else 0)
    meta = np.eye(2, dtype=np.float32)[group]
    model.set_data(indptr, indices, np.ones((12, 3), np.float32), np.ones(12, bool),
                   meta if fusion else None, np.ones(12, bool) if fusion else None)
    users = torch.as_tensor(np.repeat(np.arange(8), [len(h) for h in history]))
    return model, users, torch.as_tensor(indices)


@pytest.mark.parametrize("fusion", ["Concat", "GatedAttention"])
def test_fused_two_tower_trains_and_ranks_by_metadata(fusion):
    model, users, items = _toy(dict(type=fusion))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        loss = model(users, items, mode="loss")["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.75 * losses[0]  # (the floor: same-group negatives look alike)
    model.eval()
    with torch.no_grad():
        before = model.item_vectors().clone()
        scores = model.user_vectors(torch.arange(8)) @ before.T
        group = torch.arange(12) % 2
        # items 8..11 are unseen by every user; the metadata (the group) ranks them for each user's own group
        own = torch.stack([scores[u, 8:][group[8:] == u % 2].mean() - scores[u, 8:][group[8:] != u % 2].mean()
                           for u in range(8)])
        assert (own > 0).all()
        model.metadata_mask[:] = False  # masking the metadata changes the items the model scores
        assert not torch.allclose(model.item_vectors(), before)
        model.metadata_mask[:] = True
        model.content_mask[3] = False  # a masked video: the item is placed by its metadata alone
        after = model.item_vectors()
        assert torch.isfinite(after).all() and not torch.allclose(after[3], before[3])


def test_fusion_needs_metadata_and_a_feature_fusion():
    with pytest.raises(ConfigError, match="items have none"):
        TwoTower(fusion=dict(type="Concat"), num_users=2, num_items=3, content_dim=2)
    with pytest.raises(ConfigError, match="class logits"):
        TwoTower(fusion=dict(type="LateFusion", num_classes=2), num_users=2, num_items=3, content_dim=2, metadata_dim=2)
