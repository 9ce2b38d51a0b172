"""Extras are checked before a run row exists, with the exact install line; Ray's own logging goes to ``vkit.ray``."""
from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from vkit.core import extras
from vkit.core.extras import EXTRAS, check_config_extras, missing_modules, require_extra
from vkit.registry.errors import ConfigError
from vkit.workflows.cli import cli

NOT_HERE = "vkit_no_such_module_for_tests"


def test_require_extra_names_what_needs_it_what_is_missing_and_the_install_line():
    require_extra("onnx", ("json",), purpose="x")  # installed: nothing happens
    with pytest.raises(ConfigError) as err:
        require_extra("parquet", (NOT_HERE, "json"), purpose="--format parquet")
    assert str(err.value) == (f"--format parquet needs the 'parquet' extra (not installed: {NOT_HERE}): "
                              "pip install 'vkit[parquet]' (in a checkout: pip install -e '.[parquet]')")
    with pytest.raises(ConfigError, match=r"unknown extra 'rey'; vkit's extras are \['bench', 'onnx'"):
        require_extra("rey", purpose="x")
    assert missing_modules(["json", NOT_HERE, f"{NOT_HERE}.sub"]) == [NOT_HERE, f"{NOT_HERE}.sub"]


def test_every_extra_of_pyproject_is_known_and_listed_in_the_readme():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    declared = set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]) - {"dev"}
    assert declared == set(EXTRAS)
    readme = (root / "README.md").read_text()
    assert all(f"`vkit[{name}]`" in readme for name in declared), [n for n in declared if f"`vkit[{n}]`" not in readme]


def test_a_config_naming_a_component_whose_extra_is_missing_is_refused_with_its_key(monkeypatch):
    monkeypatch.setitem(EXTRAS, "onnx", (NOT_HERE,))
    cfg = dict(compression=dict(stages=[dict(type="ChannelPrune", amount=0.5), dict(type="OnnxExport")]))
    with pytest.raises(ConfigError, match=r"compression\.stages\[1\]\.type='OnnxExport' needs the 'onnx' extra .*"
                                          r"pip install 'vkit\[onnx\]'"):
        check_config_extras(cfg)
    check_config_extras(dict(compression=dict(stages=[dict(type="ChannelPrune")]), model=dict(type="NoSuchThing")))


def _runs(url: str) -> int:
    from vkit.core.store import open_store

    with open_store(url) as store:
        return len(store.list_runs(limit=None))


def test_a_missing_extra_fails_before_any_run_row(monkeypatch, tmp_path):
    """`vkit run` with an OnnxExport stage and `vkit run`/`vkit score` with --engine ray, their extra missing:
    one line with the install command, exit 1, and the store holds no run."""
    monkeypatch.setitem(EXTRAS, "onnx", (NOT_HERE,))
    monkeypatch.setitem(EXTRAS, "ray", (NOT_HERE,))
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    attempts = {
        "onnx": ["run", "medical-diagnosis", "--set", "compression.stages=[{type: OnnxExport}]",
                 "--data-root", str(tmp_path / "data"), "--work-dir", str(tmp_path / "w1")],
        "ray": ["run", "recommendation", "--engine", "ray", "--work-dir", str(tmp_path / "w2")],
    }
    for extra, args in attempts.items():
        result = CliRunner().invoke(cli, ["--db", url, *args])
        assert result.exit_code == 1 and isinstance(result.exception, ConfigError), result.output
        assert f"pip install 'vkit[{extra}]'" in str(result.exception)
        assert _runs(url) == 0, extra
    (tmp_path / "archive").mkdir()
    result = CliRunner().invoke(cli, ["--db", url, "score", "security-anomaly", str(tmp_path / "archive"),
                                      "--checkpoint", "1", "--engine", "ray"])
    assert result.exit_code != 0 and "pip install 'vkit[ray]'" in str(result.exception or result.output)
    assert _runs(url) == 0 and not (tmp_path / "w1").exists()


def test_watch_ui_without_the_web_extra_fails_before_any_run_row(monkeypatch, tmp_path):
    monkeypatch.setitem(EXTRAS, "web", (NOT_HERE,))
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    result = CliRunner().invoke(cli, ["--db", url, "watch", "security-anomaly", "rtsp://127.0.0.1:1/live",
                                      "--checkpoint", "1", "--ui", "127.0.0.1:0"])
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith("vkit watch --ui needs the 'web' extra")
    assert "pip install 'vkit[web]'" in str(result.exception) and _runs(url) == 0


def test_export_parquet_without_pyarrow_writes_nothing(monkeypatch, lite, tmp_path):
    store, ids = lite
    monkeypatch.setitem(EXTRAS, "parquet", (NOT_HERE,))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--db", store.url, "export", str(ids["train"]), "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 1 and "pip install 'vkit[parquet]'" in str(result.exception)
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------------- Ray's logging
@pytest.fixture
def ray_loggers():
    """Loggers shaped as Ray leaves them: "ray" and "ray.data" (propagate False), each with a console handler."""
    made = {}
    for name in ("ray", "ray.data", "ray._private.authentication"):
        logger = logging.getLogger(name)
        made[name] = (list(logger.handlers), logger.propagate, logger.level)
        logger.handlers = [logging.StreamHandler()]
        logger.propagate = name == "ray._private.authentication"
        logger.setLevel(logging.INFO)
    yield
    for name, (handlers, propagate, level) in made.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_ray_records_go_to_the_vkit_ray_logger_not_the_console(ray_loggers, caplog, capsys):
    from vkit.core.raylog import route_ray_logging

    route_ray_logging()
    route_ray_logging()  # idempotent: one forward per logger
    with caplog.at_level(logging.DEBUG, logger="vkit.ray"):
        logging.getLogger("ray._private.authentication").warning("Token authentication is enabled for this Ray cluster.")
        logging.getLogger("ray.data").info("Starting execution of Dataset dataset_1")
    assert [r.getMessage() for r in caplog.records if r.name == "vkit.ray"] == [
        "ray._private.authentication: Token authentication is enabled for this Ray cluster.",
        "ray.data: Starting execution of Dataset dataset_1"]
    assert capsys.readouterr().err == ""
    assert all(not isinstance(h, logging.StreamHandler) or h.__class__.__name__ == "_ToVkit"
               for n in ("ray", "ray.data") for h in logging.getLogger(n).handlers)


def test_warnings_from_rays_files_are_logged_others_still_shown(caplog):
    from vkit.core.raylog import _ray_warnings

    ray_file = str(Path("site-packages") / "ray" / "data" / "dataset.py")
    with caplog.at_level(logging.DEBUG, logger="vkit.ray"), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with _ray_warnings():
            warnings.warn_explicit("use override_num_blocks", DeprecationWarning, ray_file, 12)
            warnings.warn_explicit("mine", UserWarning, "/work/vkit/core/x.py", 3)
    assert [str(w.message) for w in shown] == ["mine"]
    assert any(re.fullmatch(r"DeprecationWarning: use override_num_blocks \(.*dataset\.py:12\)", r.getMessage())
               for r in caplog.records if r.name == "vkit.ray")


def test_debug_shows_the_vkit_ray_logger():
    from vkit.workflows.cli import _show_plugin_tracebacks

    log = logging.getLogger("vkit.ray")
    before = (list(log.handlers), log.level)
    try:
        _show_plugin_tracebacks()
        assert log.isEnabledFor(logging.DEBUG) and any(type(h) is logging.StreamHandler for h in log.handlers)
    finally:
        log.handlers, log.level = before[0], before[1]
        plugins = logging.getLogger("vkit.plugins")
        plugins.handlers = [h for h in plugins.handlers if type(h) is not logging.StreamHandler]


def test_extras_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, vkit.core.extras, vkit.core.raylog; print(sorted(m for m in ('torch', 'ray', 'mmengine') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    assert extras.install_line("ray") == "pip install 'vkit[ray]' (in a checkout: pip install -e '.[ray]')"


def test_what_ray_writes_to_the_stderr_descriptor_is_logged_not_shown(caplog, capfd):
    import os
    import sys

    from vkit.core.raylog import _stderr_to_log

    with caplog.at_level(logging.DEBUG, logger="vkit.ray"):
        with _stderr_to_log():
            os.write(sys.stderr.fileno(), b"[2026-12-07 I 1 1] core_worker.cc:42: E core_worker line\n\n")
        print("after", file=sys.stderr, flush=True)
    assert [r.getMessage() for r in caplog.records if r.name == "vkit.ray"] == [
        "ray: [2026-12-07 I 1 1] core_worker.cc:42: E core_worker line"]
    assert capfd.readouterr().err == "after\n"  # stderr is back once the block ends


def test_vkit_serve_without_the_web_extra_names_its_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(EXTRAS, "web", (NOT_HERE,))
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    result = CliRunner().invoke(cli, ["--db", url, "serve", "--checkpoint", "1"])
    assert result.exit_code == 1 and "vkit serve needs the 'web' extra" in str(result.exception)
    assert "pip install 'vkit[web]'" in str(result.exception) and not (tmp_path / "vkit.db").exists()
