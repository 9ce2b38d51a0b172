"""`vkit config TASK`: the merged config `vkit run` would use, as YAML or JSON (in-process, CliRunner)."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from vkit.registry.errors import ConfigError, VkitError
from vkit.workflows.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, ["config", *args], catch_exceptions=True)


def test_yaml_output_applies_set_keeps_task_order_and_reads_back_as_a_config(tmp_path):
    from vkit.plugins.medical.task import MedicalDiagnosisTask

    result = invoke("medical-diagnosis", "--set", "train.epochs=2", "--set", "compression.stages=[{type: CastBF16}]")
    assert result.exit_code == 0, result.output
    first, _, body = result.output.partition("\n")
    assert first == "# medical-diagnosis defaults <- --set train.epochs=2 <- --set compression.stages=[{type: CastBF16}]"
    shown = yaml.safe_load(body)
    assert list(shown) == list(MedicalDiagnosisTask.default_config)  # the task's own order, not sorted
    assert shown["train"]["epochs"] == 2
    assert shown["compression"]["stages"] == [{"type": "CastBF16"}]
    assert shown["data"]["transforms"]["size"] == [32, 32, 32]  # a tuple prints as a YAML list
    assert shown["train"]["batch_size"] == MedicalDiagnosisTask.default_config["train"]["batch_size"]

    saved = tmp_path / "merged.yaml"
    saved.write_text(result.output, encoding="utf-8")
    again = invoke("medical-diagnosis", "--config", str(saved), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == shown


def test_json_merges_a_config_file_then_set(tmp_path):
    user = tmp_path / "my.yaml"
    user.write_text("train:\n  epochs: 7\n  lr: 0.5\nseed: 3\n", encoding="utf-8")
    result = invoke("security-anomaly", "--config", str(user), "--set", "train.epochs=9", "--json")
    assert result.exit_code == 0, result.output
    merged = json.loads(result.output)
    assert (merged["seed"], merged["train"]["epochs"], merged["train"]["lr"]) == (3, 9, 0.5)


def test_data_sets_the_task_data_key(tmp_path):
    datalist = tmp_path / "list.json"
    datalist.write_text("{}", encoding="utf-8")
    result = invoke("medical-diagnosis", "--data", str(datalist), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["data"]["datalist"] == str(datalist)


@pytest.mark.parametrize("args, expected", [
    (["medical-diagnosis", "--set", "train.epoch=2"], "--set: unknown key 'train.epoch' (did you mean 'train.epochs'"),
    (["medical-diagnosis", "--set", "model.head.dropot=0.1"], "ClsHead (head) takes no argument 'dropot' (did you mean 'dropout'?)"),
    (["medical-diagnosis", "--set", "train.epochs=[1"], "train.epochs"),
    (["medical-diagnosys"], "unknown task 'medical-diagnosys' (did you mean 'medical-diagnosis'?)"),
])
def test_bad_input_is_the_config_error_vkit_run_gives(args, expected):
    result = invoke(*args)
    assert result.exit_code != 0 and result.output == ""
    assert isinstance(result.exception, VkitError), result.exception
    assert expected in str(result.exception)


def test_a_bad_config_file_key_names_the_file(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text("trian:\n  epochs: 1\n", encoding="utf-8")
    result = invoke("medical-diagnosis", "--config", str(user))
    assert isinstance(result.exception, ConfigError)
    assert str(user) in str(result.exception) and "did you mean 'train'" in str(result.exception)


def test_a_config_path_that_is_a_fifo_is_named_as_such_not_missing(tmp_path):
    import os
    os.mkfifo(tmp_path / "cfg.yaml")
    result = invoke("medical-diagnosis", "--config", str(tmp_path / "cfg.yaml"))
    assert isinstance(result.exception, ConfigError)
    assert "is not a regular file (FIFO)" in str(result.exception)
