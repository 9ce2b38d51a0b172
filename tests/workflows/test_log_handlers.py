"""vkit's HTTP servers leave the process's log handlers open: a run, then the live page of ``vkit watch --ui``
(uvicorn), then an mmaction2 TSM built in the same process (its init dump writes into the Runner's log file)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest


def _file_handlers() -> list[logging.FileHandler]:
    from mmengine.logging import MMLogger

    return [h for h in MMLogger.get_current_instance().handlers if isinstance(h, logging.FileHandler)]


def test_a_run_then_the_live_page_then_a_tsm_build_in_one_process(tmp_path: Path, one_torch_thread: None) -> None:
    from vkit.core.model import build_model
    from vkit.plugins.medical.task import MedicalDiagnosisTask
    from vkit.registry.registries import BACKBONES
    from vkit.workflows.run import run_task
    from vkit.workflows.watch_ui import start_live_page

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    result = run_task("medical-diagnosis", overrides=[*MedicalDiagnosisTask.smoke_overrides, "compression.stages=[]"],
                      db_url=db, work_dir=tmp_path / "work", data_root=tmp_path / "data", echo=lambda *_: None)
    assert result.status == "finished"
    handlers = _file_handlers()
    assert handlers and Path(handlers[0].baseFilename).is_relative_to(tmp_path / "work")  # the run's Runner log
    page = start_live_page(db, result.run_id, "127.0.0.1", 0, poll_seconds=0.2)
    page.stop()
    assert all(h.stream is not None and not h.stream.closed for h in handlers)  # uvicorn's default dictConfig closed them all
    net = build_model(dict(backbones=dict(video=dict(type="TSM", **BACKBONES.get("TSM").smoke_config())),
                           head=dict(type="ClsHead", num_classes=3)))
    assert sum(p.numel() for p in net.parameters()) > 0
    handlers[0].flush()
    assert "Initialization information" in Path(handlers[0].baseFilename).read_text()  # mmaction2's dump got there


def test_uvicorn_config_keeps_other_handlers_and_formats_uvicorn_lines(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from vkit.workflows.web_access import uvicorn_config

    other = logging.FileHandler(tmp_path / "other.log")
    try:
        config = uvicorn_config(lambda *_: None, host="127.0.0.1", port=0, log_level="warning")
        assert config.log_config is None and other.stream is not None and not other.stream.closed
        logging.getLogger("uvicorn.error").info("hidden at log_level=warning")
        logging.getLogger("uvicorn.error").warning("port %s taken", 8765)
        uvicorn_config(lambda *_: None)                       # a second server: still one handler per logger
        assert [type(h).__name__ for h in logging.getLogger("uvicorn").handlers].count("_SysStreamHandler") == 1
    finally:
        other.close()
    err = capsys.readouterr().err
    assert err.splitlines() == ["WARNING:  port 8765 taken"]
