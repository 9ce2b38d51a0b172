"""``vkit.testing``: fixtures and helpers for plugin authors' tests (the code is in :mod:`vkit.core.testing` and :mod:`vkit.workflows.plugin_check`).

Example::

    # tests/conftest.py of your plugin
    from vkit.testing import vkit_store  # noqa: F401

    def test_task(tmp_path):
        from vkit.testing import run_task_smoke
        assert run_task_smoke("acme-task", tmp_path=tmp_path).status == "finished"
"""
from vkit.core.testing import make_video, make_volume, temp_store, vkit_store  # noqa: F401
from vkit.workflows.plugin_check import predict_smoke, run_task_smoke, score_smoke  # noqa: F401

__all__ = ["make_video", "make_volume", "predict_smoke", "run_task_smoke", "score_smoke", "temp_store", "vkit_store"]
