"""``vkit run recommendation``: content-aware video recommendation with a cold-start slice.

Items are videos; each gets a content embedding from a frozen registered
backbone (default :class:`~vkit.plugins.recommendation.content.ClipStats`,
cached by video sha256 + backbone config; precomputed ``.npy`` features of
atomic data sets are used as they are), standardised over the catalogue. The
main model (``model``, default ``TwoTower``) is trained by the lifecycle's
Runner on the training interactions, validated by Recall/NDCG/HR@10 on the
validation interactions (the best epoch by ``ndcg@10`` is kept), and evaluated
on the test interactions by exact full ranking over every item (seen items
excluded) and on the **cold-start slice**: ranking among the items that have
no training interaction, against each user's held-out cold items. The models
of ``compare.models`` (default Popularity, BPR-MF, VBPR) are trained the same
way in the same run; the report and the summary show one table of all.

Data: the embedded set (:mod:`vkit.plugins.recommendation.synthetic`) or your
own folder with ``--data`` / ``--set data.root=...``: ``interactions.csv``
(+ ``items.csv`` with videos), or RecBole/MMRec atomic files (see
:mod:`vkit.plugins.recommendation.data`).

Examples::

    vkit run recommendation
    vkit run recommendation --set model.type=VBPR --set "compare.models=[Popularity,BPRMF]" \\
        --set compare.settings.BPRMF.dim=64
    vkit run recommendation --data /data/mmrec/baby --set data.split.mode=predefined
    vkit recommend --run 7 --user u0042 -k 10
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vkit.core.task import DEFAULT_TRAIN, Task
from vkit.registry.errors import ConfigError, DataError

#: The ``train`` section: :data:`vkit.core.task.DEFAULT_TRAIN` with what ranking models change.
TRAIN = dict(DEFAULT_TRAIN, epochs=15, batch_size=256, lr=3e-3, log_interval=50)


class RecommendationTask(Task):
    """Recommend videos from watch histories and content; evaluates full ranking and the cold-start slice."""

    name = "recommendation"
    description = ("Recommend videos from watch histories + video content (popularity, BPR-MF, VBPR, two-tower): "
                   "full-ranking Recall/NDCG@10, cold-start slice.")
    default_config: dict[str, Any] = dict(
        seed=0,
        data=dict(
            root=None,  # a folder with interactions.csv (+ items.csv) or atomic .inter/.item/.npy; None = embedded
            format="auto",  # 'csv', 'atomic' or 'auto' (atomic when the folder holds a .inter file)
            interactions="interactions.csv",
            items="items.csv",  # optional: the catalogue and each item's video
            split=dict(mode="leave_last_out", val_per_user=1, test_per_user=3, val_fraction=0.1, test_fraction=0.1),
            synthetic=dict(n_users=600, n_items=240, n_new=60, history=(10, 25), recent=4),
        ),
        content=dict(
            backbone=dict(type="ClipStats"),
            num_frames=16,
            size=(32, 32),
            source="auto",  # 'video', 'features' (atomic .npy) or 'auto' (features when the data has them)
            # items.csv title/tags/duration as features (hashed tokens + log duration), fused with the content
            # by model.fusion (a FUSIONS config, e.g. dict(type='GatedAttention')); unused without it
            metadata_buckets=64,
        ),
        # TwoTower also takes fusion=dict(type='Concat'|'Mean'|'Weighted'|'GatedAttention'): content + metadata
        model=dict(type="TwoTower", dim=32, hidden=64, temperature=0.1, id_dropout=0.5, num_negatives=32),
        compare=dict(  # comparison models, trained in the same run: names (or MODELS configs) ...
            models=["Popularity", "BPRMF", "VBPR"],
            # ... and each name's settings (``train``: overrides of the run's train section for that model)
            settings=dict(BPRMF=dict(dim=32, train=dict(lr=0.01)), VBPR=dict(dim=32, visual_dim=32, train=dict(lr=0.01))),
        ),
        eval=dict(ks=(10, 20), chunk=1024),
        train=TRAIN,
        checkpoint=dict(save="best", metric="ndcg@10", rule="greater", keep_epochs=False),
        compression=dict(stages=[]),
        # torch threads while the models train (they are small: on a busy machine more threads only add
        # spin-wait overhead, 10x the CPU time measured on the shared 2-core box); None keeps torch's setting.
        # Ranking (matrix products over the whole catalogue) runs with the process's own setting.
        threads=1,
    )
    free_keys = ("model", "data.synthetic", "content.backbone", "compare.settings")
    data_key = "data.root"
    smoke_overrides = ("train.epochs=1", "data.synthetic.n_users=30", "data.synthetic.n_items=18",
                       "data.synthetic.n_new=6", "data.synthetic.history=(3,6)", "model.dim=8", "model.hidden=8",
                       "model.num_negatives=4")
    generator_version = "2"  # 2: items.csv has title, tags, duration
    capabilities = frozenset({"recommend"})  # vkit recommend

    def generate_data(self, root: Path, seed: int, **params: Any) -> Path:
        """Write the embedded data set under ``root``; returns its ``items.csv``."""
        from vkit.plugins.recommendation.synthetic import generate

        return generate(root, seed=seed, **params)

    # ------------------------------------------------------------------ data
    def datasets(self, cfg: Any, ctx: Any) -> dict[str, Any]:
        """``train`` pairs, ``val``/``test`` users, plus the split and the content matrix the models are built on."""
        from vkit.plugins.recommendation.data import PairDataset, split_interactions, user_dataset

        from vkit.plugins.recommendation.evaluator import set_threads

        self.threads_before = set_threads(cfg.get("threads"))
        data = self.read(cfg, Path(ctx.data))
        ctx.record_skipped(data.problems)
        for note in data.notes:
            ctx.echo(f"note: {note}")
        s = cfg.data.split
        split = split_interactions(data, s.mode, int(s.val_per_user), int(s.test_per_user), float(s.val_fraction),
                                   float(s.test_fraction))
        content, mask = self.content(cfg, ctx, data)
        metadata, metadata_mask = self.metadata(cfg, ctx, data)
        ctx.summary["interactions"] = (f"{len(split.train)} train / {len(split.val)} val / {len(split.test)} test; "
                                       f"{data.num_users} users, {data.num_items} items ({len(split.cold_items)} cold)")
        ctx.echo(f"data: {ctx.summary['interactions']}")
        return dict(train=PairDataset(data.users[split.train], data.items[split.train]),
                    val=user_dataset(split, "val") if len(split.val) else None, test=user_dataset(split, "test"),
                    split=split, content=content, content_mask=mask, metadata=metadata, metadata_mask=metadata_mask)

    @staticmethod
    def read(cfg: Any, location: Path) -> Any:
        """The interactions at ``location`` (a folder, or a file inside it) in ``data.format``."""
        from vkit.plugins.recommendation.data import read_atomic, read_csv

        folder = location if location.is_dir() else location.parent
        fmt = cfg.data.format
        if fmt not in ("auto", "csv", "atomic"):
            raise ConfigError(f"data.format={fmt!r}; expected 'auto', 'csv' or 'atomic'")
        if fmt == "atomic" or (fmt == "auto" and any(folder.glob("*.inter"))):
            return read_atomic(folder)
        items = folder / cfg.data["items"] if cfg.data["items"] else None  # (Config.items is dict.items)
        return read_csv(folder / cfg.data["interactions"], items if items is not None and items.is_file() else None)

    def content(self, cfg: Any, ctx: Any, data: Any) -> tuple[Any, Any]:
        """Standardised ``(N, D)`` item content and its mask (``None, None`` when there is none)."""
        import numpy as np

        from vkit.plugins.recommendation.content import embed_items, item_embedder

        c = cfg.content
        if c.source not in ("auto", "video", "features"):
            raise ConfigError(f"content.source={c.source!r}; expected 'auto', 'video' or 'features'")
        if c.source == "features" or (c.source == "auto" and data.item_features is not None):
            if data.item_features is None:
                raise ConfigError("content.source='features' but the data has no .npy feature arrays")
            feats, mask = data.item_features.astype(np.float32), np.ones(data.num_items, bool)
            ctx.echo(f"content: {feats.shape[1]} precomputed features per item")
        elif any(v is not None for v in data.item_videos):
            scorer = item_embedder(dict(c.backbone), int(c.num_frames), tuple(c.size), seed=int(cfg.seed or 0))
            feats, mask, _, failures = embed_items(data.item_videos, scorer, ctx.score_videos)
            ctx.echo(f"content: {c.backbone.get('type')} embeddings of {int(mask.sum())} videos "
                     f"({len(failures)} masked; stored by video sha256 under model {scorer.model_sha256[:12]})")
            ctx.summary["embedding model"] = scorer.model_sha256[:12]
            ctx.record_skipped([dict(item_id=f"item:{data.item_ids[f['index']]}", path=f["path"] or "",
                                     reason=f"content masked: {f['reason']}") for f in failures])
        else:
            return None, None
        if not mask.any():
            raise DataError("content: no item has usable content (every video failed); see the skipped rows")
        mean, std = feats[mask].mean(0), feats[mask].std(0) + 1e-6
        feats = np.where(mask[:, None], (feats - mean) / std, 0.0).astype(np.float32)
        return feats, mask

    @staticmethod
    def metadata(cfg: Any, ctx: Any, data: Any) -> tuple[Any, Any]:
        """``(N, buckets + 1)`` metadata features and their mask (``None, None`` when the items have none)."""
        if data.item_metadata is None:
            return None, None
        from vkit.plugins.recommendation.metadata import metadata_features

        feats, mask = metadata_features(data.item_metadata, int(cfg.content.metadata_buckets))
        ctx.echo(f"metadata: title/tags/duration of {int(mask.sum())} of {len(mask)} items")
        return feats, mask

    # ------------------------------------------------------------------ model
    def build_model(self, cfg: Any, datasets: dict[str, Any] | None) -> Any:
        """The ``model`` recommender sized to the data, its buffers filled (history, counts, content)."""
        if datasets is None:
            raise ConfigError("recommendation: reload a trained recommender with "
                              "vkit.core.trained.load_trained(checkpoint)")
        from vkit.plugins.recommendation.models import build_recommender

        return build_recommender(dict(cfg.model), datasets)

    def evaluator(self, cfg: Any) -> Any:
        from vkit.plugins.recommendation.evaluator import RankingEvaluator

        return RankingEvaluator(cfg, threads_before=getattr(self, "threads_before", None))

    def recommender(self, trained: Any) -> Any:
        """The serving side of a reloaded run (``vkit recommend``): a RecommendationService."""
        from vkit.plugins.recommendation.serve import service

        return service(trained)

    def rebuild_model(self, meta: dict[str, Any]) -> Any:
        """The recommender of a sidecar written before vkit saved ``model_config``."""
        from vkit.plugins.recommendation.serve import rebuild_recommender

        return rebuild_recommender(meta)

    def checkpoint_meta(self, cfg: Any, datasets: dict[str, Any]) -> dict[str, Any]:
        """What serving needs beside the model (:func:`~vkit.plugins.recommendation.serve.service`): ids, sizes, videos."""
        split = datasets["split"]
        data = split.data
        content, metadata = datasets["content"], datasets.get("metadata")
        return dict(recommender=dict(
            model=dict(cfg.model), num_users=data.num_users, num_items=data.num_items,
            num_interactions=len(split.train), content_dim=0 if content is None else int(content.shape[1]),
            metadata_dim=0 if metadata is None or cfg.model.get("fusion") is None else int(metadata.shape[1]),
            user_ids=data.user_ids, item_ids=data.item_ids, item_videos=data.item_videos,
            cold_items=[data.item_ids[i] for i in split.cold_items.tolist()]))

