"""``vkit score``: scoring video archives with a task's VideoScorer, one module per job.

- :mod:`~vkit.workflows.scoring.score`: ``score_archive`` and the ``vkit score`` command (the run, its summary).
- :mod:`~vkit.workflows.scoring.inventory`: finding the archive's video files (and the unreadable ones).
- :mod:`~vkit.workflows.scoring.engine`: decoding, batching and scoring clips (the local engine).
- :mod:`~vkit.workflows.scoring.leases`: leasing each video so concurrent jobs score it once.
- :mod:`~vkit.workflows.scoring.ray_engine`: the same on a Ray cluster.
- :mod:`~vkit.workflows.scoring.aggregates`: per-group aggregates of a scoring run.
- :mod:`~vkit.workflows.scoring.video_engine`: ``ctx.score_videos`` inside ``vkit run``.

Example::

    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    summary = score_archive("security-anomaly", ["/data/cams"], "7", options=ScoreOptions(workers=2))
"""
