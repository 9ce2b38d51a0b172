"""vkit.core.progress: rate and ETA of long loops; lines when piped, a rich bar on a terminal, nothing under --json."""
from __future__ import annotations

import json
import re

import click
import pytest
import torch
from click.testing import CliRunner

from vkit.core import progress
from vkit.core.compression.recover import Recovery, recovery_epochs
from vkit.core.progress import Progress, format_rate, format_seconds, track
from vkit.registry.errors import ConfigError


@pytest.fixture(autouse=True)
def _follow_terminal():
    yield
    progress.reset()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_mode_writes_each_note_with_rate_and_eta(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    progress.set_mode("lines")
    lines: list[str] = []
    bar = Progress("train", 40, unit="it", echo=lines.append)
    clock.now += 10.0
    bar.advance(10, note="epoch 1/4  loss 0.6931")
    assert lines == ["epoch 1/4  loss 0.6931  (10/40 it, 1.00 it/s, ETA 30 s)"]
    clock.now += 30.0
    bar.advance(30)
    bar.close()
    bar.close()  # once
    assert lines[1:] == ["train: 40 it in 40 s (1.00 it/s)"]


def test_a_resumed_loop_counts_its_done_steps_toward_the_total_not_the_rate(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    progress.set_mode("lines")
    bar = Progress("train", 100, start=50, closing_line=False, echo=lambda line: None)
    clock.now += 5.0
    bar.advance(10)
    assert bar.rate() == pytest.approx(2.0) and bar.eta() == pytest.approx(20.0)
    assert bar.summary() == "60/100 it, 2.00 it/s, ETA 20 s"


def test_off_mode_writes_nothing(capsys):
    progress.set_mode("off")
    lines: list[str] = []
    assert list(track(range(3), "generating", echo=lines.append)) == [0, 1, 2]
    with Progress("x", 2, echo=lines.append) as bar:
        bar.advance(note="never shown")
    assert lines == [] and capsys.readouterr() == ("", "")


def test_without_echo_lines_go_to_stderr(capsys):
    progress.set_mode("lines")
    for _ in track(["a.mp4", "b.mp4"], "extracting features", unit="videos"):
        pass
    out, err = capsys.readouterr()
    assert out == "" and re.fullmatch(r"extracting features: 2 videos in [\d.]+ s \(.+\)\n", err), err


def test_bar_mode_nests_loops_as_rows_of_one_display_and_close_all_stops_it():
    progress.set_mode("bar")
    outer = Progress("compression", 2, unit="stage")
    inner = Progress("recover", 10, unit="it")
    assert outer._bar is inner._bar is progress._display  # one display, two rows
    inner.advance(3, status="loss 0.5")
    assert [t.completed for t in progress._display.tasks] == [0, 3]
    inner.close()
    assert progress._display is not None and len(progress._display.tasks) == 1
    progress.close_all()  # what the CLI does when a command fails
    assert progress._display is None and outer.closed


def test_names_from_data_are_not_read_as_markup():
    progress.set_mode("bar")
    with Progress("generating [bold]x[/bold]", 1) as bar:
        bar.advance(status="[red]u1")
        task = progress._display.tasks[0]
        rendered = [str(c.render(task)) for c in progress._display.columns if hasattr(c, "text_format")]
    assert "generating [bold]x[/bold]" in rendered and "[red]u1" in rendered


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (4.25, "4.2 s"), (42, "42 s"), (185, "3m 05s"),
                                               (3720, "1h 02m")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_format_rate_turns_slow_loops_into_seconds_per_step():
    assert format_rate(3.2, "it") == "3.20 it/s" and format_rate(0.25, "stages") == "4.0 s/stage"
    assert format_rate(0.0, "it") == "? it/s"


def test_set_mode_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="expected one of"):
        progress.set_mode("fancy")


def test_json_commands_are_silent_and_others_follow_the_terminal():
    from vkit.workflows.cli import cli

    @click.command("progress-probe")
    @click.option("--json", "as_json", is_flag=True)
    def probe(as_json: bool) -> None:
        with Progress("probe", 2, echo=click.echo) as bar:
            bar.advance(2, note="step done")
        click.echo(json.dumps(dict(mode=progress.current_mode())) if as_json else "human")

    cli.add_command(probe)
    try:
        quiet = CliRunner().invoke(cli, ["progress-probe", "--json"])
        loud = CliRunner().invoke(cli, ["progress-probe"])
    finally:
        cli.commands.pop("progress-probe")
    assert quiet.exit_code == 0 and json.loads(quiet.output) == dict(mode="off")  # stdout: the JSON alone
    assert loud.exit_code == 0 and "step done  (2/2 it" in loud.output and "probe: 2 it in" in loud.output
    assert progress._mode is None  # the command's end gives the mode back to the terminal


# ---------------------------------------------------------------------------- training (mmengine hook)
class Blobs(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.x = torch.randn(n, 1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        self.y = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=dict(volume=self.x[i]), label=int(self.y[i]), case_id=f"case{i}")


def test_training_writes_one_line_per_epoch_with_loss_rate_and_eta(tmp_path):
    from vkit.core.engine import build_runner

    progress.set_mode("lines")
    model = dict(type="VideoModel", backbones=dict(volume=dict(type="TinyC3D", widths=(4,), in_channels=1,
                                                              modality="volume")),
                 head=dict(type="ClsHead", num_classes=2))
    lines: list[str] = []
    runner = build_runner(model, work_dir=tmp_path, train_set=Blobs(8), train=dict(epochs=2, batch_size=4),
                          checkpoint=False, echo=lines.append)
    runner.train()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"epoch 1/2  loss \d\.\d{4}  \(2/4 it, .+ it/s, ETA .+\)", lines[0]), lines[0]
    assert re.fullmatch(r"epoch 2/2  loss \d\.\d{4}  \(4/4 it, .+ it/s\)", lines[1]), lines[1]


# ---------------------------------------------------------------------------- the recovery budget
def test_recovery_without_epochs_follows_train_epochs():
    assert [recovery_epochs(e) for e in (None, 1, 2, 4, 5, 12)] == [1, 1, 1, 1, 2, 3]
    rec = Recovery.from_config(dict(mode="distill"), owner="compression.stages[0]")
    assert rec.epochs is None
    seen: list[int] = []

    class Ctx:
        train_epochs = 2

        @staticmethod
        def train(model, epochs):
            seen.append(epochs)
            return model

    rec.run(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), Ctx(), owner="s")
    Ctx.train_epochs = 12
    rec.run(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), Ctx(), owner="s")
    Recovery.from_config(dict(epochs=5), owner="s").run(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), Ctx(), owner="s")
    assert seen == [1, 3, 5]  # train.epochs=2 no longer distils 3 epochs; a set recover.epochs wins
    with pytest.raises(ConfigError, match=r"recover.epochs: expected an int >= 1, got 0 \(or leave it out"):
        Recovery.from_config(dict(epochs=0), owner="compression.stages[0]")


def test_lines_printed_while_bars_are_on_screen_go_above_them():
    lines: list[str] = []
    echo = progress.above_bars(lines.append)
    echo("before")  # no bar: through echo
    progress.set_mode("bar")
    with Progress("train", 4, echo=lines.append) as bar:
        with bar._bar.console.capture() as captured:
            echo("  val  auc 0.9000")
            bar.note("epoch 1/2  loss 0.5")
    assert lines == ["before"]  # both went through the display's console, above the bar
    assert "val  auc 0.9000" in captured.get() and "epoch 1/2  loss 0.5" in captured.get()


def test_lines_to_sends_loops_without_an_echo_where_the_run_writes(capsys):
    progress.set_mode("lines")
    lines: list[str] = []
    with progress.lines_to(lines.append):
        list(track(range(2), "generating cases", unit="cases"))
    list(track(range(1), "after", unit="cases"))
    assert len(lines) == 1 and lines[0].startswith("generating cases: 2 cases in")
    assert capsys.readouterr().err.startswith("after: 1 cases in")
