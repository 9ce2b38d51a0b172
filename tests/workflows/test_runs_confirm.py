"""`vkit runs list` shows each run's main metric and filters by kind; `vkit runs delete` asks unless --yes (issue 25)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vkit.workflows import runs as runs_module
from vkit.workflows.cli import cli
from vkit.workflows.runs import main_metric


def _invoke(store, *args, input=None):
    return CliRunner().invoke(cli, ["--db", store.url, *args], input=input, env={"COLUMNS": "250"})


def test_main_metric_is_the_configured_one_on_test_then_val_then_the_first_test_metric():
    metrics = {"test/acc": 0.75, "test/auc": 0.81, "val/qwk": 0.4, "compression/ChannelPrune/auc": 0.8}
    assert main_metric(dict(config=dict(checkpoint=dict(metric="auc"))), metrics) == ("test/auc", 0.81)
    assert main_metric(dict(config=dict(compression=dict(metric="qwk"))), metrics) == ("val/qwk", 0.4)
    assert main_metric(dict(config={}), metrics) == ("test/acc", 0.75)
    assert main_metric(dict(config=None), {"train/epoch_loss": 0.3}) is None  # a scoring or predict run
    assert main_metric(dict(kind="pretrain", config={}), {"train/loss": 2.5, "train/lr": 0.0}) == ("train/loss", 2.5)
    assert main_metric(dict(kind="train", config={}), {"train/loss": 2.5}) is None


def test_list_shows_the_main_metric_and_filters_by_kind(lite):
    store, ids = lite
    tuned = store.start_run("demo-task", "demo", dict(checkpoint=dict(metric="auc")), seed=0)
    store.log_metrics(tuned, {"acc": 0.5, "auc": 0.93}, step=0, split="test")
    store.finish_run(tuned, "finished")
    listed = {r["id"]: r for r in json.loads(_invoke(store, "runs", "list", "--json").output)}
    assert listed[tuned]["metric"] == dict(key="test/auc", value=0.93)
    assert listed[ids["train"]]["metric"] == dict(key="test/acc", value=0.75)
    assert listed[ids["score"]]["metric"] is None
    table = _invoke(store, "runs", "list", "--kind", "train")
    assert table.exit_code == 0 and "main metric" in table.output and "auc 0.9300" in table.output
    assert "acc 0.7500" in table.output and "predict" not in table.output
    only = json.loads(_invoke(store, "runs", "list", "--kind", "predict", "--json").output)
    assert [r["id"] for r in only] == [ids["predict"]]


def test_delete_without_a_terminal_or_yes_is_refused_and_deletes_nothing(lite):
    store, ids = lite
    before = store.counts()
    out = _invoke(store, "runs", "delete", str(ids["train"]))
    assert out.exit_code == 1 and "without confirmation" in str(out.exception) and "--yes" in str(out.exception)
    assert store.counts() == before
    out = _invoke(store, "runs", "delete", str(ids["train"]), "9999")  # a bad id is named before anything is asked
    assert out.exit_code == 1 and "runs [9999] are not in store" in str(out.exception)
    out = _invoke(store, "runs", "delete", str(ids["train"]), "--yes", "--json")
    assert out.exit_code == 0 and json.loads(out.output)["runs"] == [ids["train"]]
    assert store.get_run(ids["train"]) is None


@pytest.mark.parametrize(("answer", "deleted"), [("n\n", False), ("y\n", True)])
def test_delete_asks_on_a_terminal(lite, monkeypatch, answer, deleted):
    store, ids = lite
    monkeypatch.setattr(runs_module, "_interactive", lambda: True)
    out = _invoke(store, "runs", "delete", str(ids["predict"]), input=answer)
    assert f"run {ids['predict']}: predict demo-task (finished" in out.output
    assert "Delete 1 run(s) and their rows?" in out.output
    assert (out.exit_code == 0) is deleted and (store.get_run(ids["predict"]) is None) is deleted, out.output
    assert ("nothing deleted" in out.output) is not deleted
