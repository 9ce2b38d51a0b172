"""core.files and core.processes: only regular files are read (a FIFO never blocks), file states tell a rewrite,
workers die with their parent, SIGTERM interrupts."""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from vkit.core.files import FileState, NotRegularFileError, check_regular, file_kind, open_regular
from vkit.core.processes import Terminated, die_with_parent, sigterm_interrupts
from vkit.core.store.provenance import sha256_file
from vkit.registry.errors import DataError


@pytest.fixture
def specials(tmp_path: Path) -> dict[str, Path]:
    os.mkfifo(tmp_path / "pipe.mp4")
    os.symlink("/dev/zero", tmp_path / "zero.mp4")
    (tmp_path / "folder.mp4").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock.mp4"))
    yield dict(pipe=tmp_path / "pipe.mp4", zero=tmp_path / "zero.mp4", folder=tmp_path / "folder.mp4",
               sock=tmp_path / "sock.mp4")
    listener.close()


@pytest.mark.parametrize("name, kind", [("pipe", "FIFO"), ("zero", "character device"), ("folder", "folder"),
                                        ("sock", "socket")])
def test_non_regular_files_are_refused_before_a_byte_is_read(specials, name, kind):
    began = time.monotonic()
    for read in (open_regular, check_regular, sha256_file):
        with pytest.raises(NotRegularFileError) as err:
            read(specials[name])
        assert str(err.value) == f"{specials[name]}: not a regular file ({kind})"
        assert isinstance(err.value, DataError) and isinstance(err.value, OSError)  # both families catch it
    assert time.monotonic() - began < 5  # the FIFO with no writer did not block


def test_regular_files_open_and_missing_ones_say_so(tmp_path):
    file = tmp_path / "a.bin"
    file.write_bytes(b"abc")
    with open_regular(file) as handle:
        assert handle.read() == b"abc"
    assert check_regular(file).st_size == 3 and file_kind(check_regular(file).st_mode) == "regular file"
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing.bin")


def test_file_state_tells_an_in_place_rewrite_of_the_same_size_and_a_replacement(tmp_path):
    file = tmp_path / "a.bin"
    file.write_bytes(b"aaaa")
    before = FileState.of(file)
    assert FileState.of(file) == before
    time.sleep(0.01)
    with open(file, "r+b") as handle:
        handle.write(b"bbbb")
    os.utime(file, ns=(before.mtime_ns, before.mtime_ns))  # even with its old mtime put back: ctime tells
    assert FileState.of(file) != before
    other = tmp_path / "b.bin"
    other.write_bytes(b"bbbb")
    now = FileState.of(file)
    os.replace(other, file)
    assert FileState.of(file).ino != now.ino


def test_score_videos_refuses_rows_for_a_file_rewritten_while_it_was_scored(tmp_path):
    from vkit.core.scoring import score_videos
    from vkit.core.sampling import sample_segments
    from vkit.core.video import write_video

    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "a.mp4", rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), fps=8)
    other = write_video(tmp_path / "b.mp4", rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), fps=8).read_bytes()

    class Rewriting:  # rewrites its video once, between the hash and the decode
        num_segments, model_sha256 = 2, "m"

        def __init__(self, rewrites: int) -> None:
            self.rewrites = rewrites

        def decode(self, path):
            if self.rewrites:
                self.rewrites -= 1
                Path(path).write_bytes(other)
            return sample_segments(path, 2, 2, (8, 8)).transpose(0, 4, 1, 2, 3).astype(np.float32)

        def score(self, clips):
            return clips.mean(dim=(1, 2, 3, 4))

        def summarize(self, scores, info):
            return dict(events=[])

    scored, failed = score_videos(Rewriting(1), [str(video)], skip_bad=True)
    assert scored == [] and "changed while being scored" in failed[0]["error"]
    scored, failed = score_videos(Rewriting(0), [str(video)], skip_bad=True)  # settled: scored
    assert failed == [] and scored[0]["sha256"] == sha256_file(video)[0]


def _orphan(parent_ready, child_pid) -> None:  # a middle process: starts a worker, then waits to be killed
    context = multiprocessing.get_context("fork")
    worker = context.Process(target=_spin, args=(os.getpid(),), daemon=False)
    worker.start()
    child_pid.value = worker.pid
    parent_ready.set()
    time.sleep(120)


def _spin(parent: int) -> None:
    die_with_parent(parent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pass


def test_a_worker_dies_with_its_parent():
    context = multiprocessing.get_context("fork")
    ready, pid = context.Event(), context.Value("i", 0)
    middle = context.Process(target=_orphan, args=(ready, pid))
    middle.start()
    assert ready.wait(60)
    os.kill(middle.pid, signal.SIGKILL)  # no cleanup at all: only the kernel can end the worker
    middle.join(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid.value}").exists() and \
            Path(f"/proc/{pid.value}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        time.sleep(0.05)
    alive = Path(f"/proc/{pid.value}").exists() and \
        Path(f"/proc/{pid.value}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    if alive:
        os.kill(pid.value, signal.SIGKILL)
    assert not alive, "the worker outlived its parent"


def test_sigterm_interrupts_the_main_thread_then_the_old_handler_is_back():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match="SIGTERM") as err:
        with sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert isinstance(err.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is previous
