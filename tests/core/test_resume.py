"""Resuming a training run: the resume state's round trip, the run row reopened, and what cannot be resumed."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from vkit.core.resume import _pack, _unpack
from vkit.registry.errors import StoreError


def test_state_round_trip_keeps_int_keys_tuples_arrays_and_non_finite_floats() -> None:
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    state = dict(optimizer=optim.state_dict(), rng=dict(numpy=np.random.get_state(), python=random.getstate(),
                                                        torch=torch.get_rng_state()), end=math.inf, nothing=None)
    tensors: dict[str, torch.Tensor] = {}
    back = _unpack(_pack(state, "s", tensors), tensors)
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert set(back["optimizer"]["state"]) == {0, 1}  # int keys: what Optimizer.load_state_dict matches on
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], optim.state_dict()["state"][0]["exp_avg"])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["rng"]["python"] == random.getstate() and back["end"] == math.inf and back["nothing"] is None
    numpy_state = back["rng"]["numpy"]
    assert numpy_state[1].dtype == np.uint32 and np.array_equal(numpy_state[1], np.random.get_state()[1])
    np.random.set_state(numpy_state)  # accepted as numpy's own
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    fresh.load_state_dict(back["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][1]["exp_avg_sq"], optim.state_dict()["state"][1]["exp_avg_sq"])


def test_reopen_run_puts_an_interrupted_training_run_back_to_running(store) -> None:
    run = store.start_run("t", "p", {}, seed=0)
    with pytest.raises(StoreError, match=f"run {run} is running: only an interrupted or failed run can be resumed"):
        store.reopen_run(run, "t")
    store.finish_run(run, "interrupted", "interrupted (KeyboardInterrupt)")
    with pytest.raises(StoreError, match=f"run {run} is a train run of task 't', not a training run of 'u'"):
        store.reopen_run(run, "u")
    assert store.reopen_run(run, "t") == run
    row = store.get_run(run)
    assert row["status"] == "running" and row["error"] is None and row["finished_at"] is None
    scored = store.start_run("t", "p", {}, seed=0, kind="score")
    store.finish_run(scored, "interrupted", "x")
    with pytest.raises(StoreError, match="is a score run"):
        store.reopen_run(scored, "t")


def test_an_interrupted_training_run_names_the_resume_command(store) -> None:
    with pytest.raises(KeyboardInterrupt):
        with store.track_run("medical-diagnosis", "medical", {}, seed=0) as run_id:
            raise KeyboardInterrupt
    assert store.get_run(run_id)["error"] == ("interrupted (KeyboardInterrupt: Ctrl-C or SIGINT); `vkit run "
                                              f"medical-diagnosis --resume {run_id}` continues it from its last finished epoch")
    with pytest.raises(KeyboardInterrupt):
        with store.track_run("t", "p", {}, seed=0, kind="score") as scored:
            raise KeyboardInterrupt
    assert store.get_run(scored)["error"].endswith("; rerun to resume")  # a scoring job resumes by rerunning it
