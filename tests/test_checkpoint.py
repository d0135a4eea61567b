"""Run folders, atomic checkpoints, exact resume after a kill, refusal of conflicting configs."""

from __future__ import annotations

import dataclasses
import errno
import json
import time

import pytest
import torch
from conftest import kill_at

from genlab import checkpoint, recipes
from genlab import training as train_mod
from genlab.errors import ConfigError, RunError, TrainingDiverged, WriteFailed


def tiny_cfg(tmp_path, name="run", **kw):
    values = dict(dataset="digits", steps=30, batch_size=32, log_every=1, checkpoint_every=10,
                  hidden=(16,), latent_dim=2, run_dir=str(tmp_path / name), seed=3)
    values.update(kw)
    return recipes.make_config("vae", "reference", **values)


def losses(run_dir):
    return [(r["step"], r["loss"], r["kl"]) for r in checkpoint.read_log(run_dir)]


def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    straight = train_mod.train(tiny_cfg(tmp_path, "straight"), progress=False)
    with monkeypatch.context() as m:
        kill_at(m, "vae", 23)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(tiny_cfg(tmp_path, "killed"), progress=False)
    killed = tmp_path / "killed"
    assert checkpoint.latest_checkpoint(killed)["step"] == 20
    assert len(checkpoint.read_log(killed)) == 23  # lines past the checkpoint get dropped
    train_mod.train(resume=killed, progress=False)
    assert losses(killed) == losses(straight)
    w1, _ = checkpoint.load_weights(straight)
    w2, _ = checkpoint.load_weights(killed)
    assert all(torch.equal(w1["model"][k], w2["model"][k]) for k in w1["model"])


def test_resume_with_binarize_and_extension(tmp_path, monkeypatch):
    """Dynamic binarisation draws from the run's generator: its state must resume too."""
    straight = train_mod.train(tiny_cfg(tmp_path, "a", binarize=True, steps=20), progress=False)
    with monkeypatch.context() as m:
        kill_at(m, "vae", 15)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(tiny_cfg(tmp_path, "b", binarize=True, steps=20), progress=False)
    train_mod.train(resume=tmp_path / "b", progress=False)
    assert losses(tmp_path / "b") == losses(straight)
    # extending a finished run is allowed: steps may change
    train_mod.train(resume=tmp_path / "b", steps=25, progress=False)
    assert checkpoint.latest_checkpoint(tmp_path / "b")["step"] == 25


def test_resume_refuses_conflicting_config(tmp_path):
    run = train_mod.train(tiny_cfg(tmp_path, steps=10), progress=False)
    with pytest.raises(ConfigError, match=r"lr \(saved 0.001, given 0.1\), "
                                          r"latent_dim \(saved 2, given 4\)"):
        train_mod.train(resume=run, latent_dim=4, lr=0.1, progress=False)


def test_new_run_refuses_existing_folder(tmp_path):
    train_mod.train(tiny_cfg(tmp_path, steps=10), progress=False)
    with pytest.raises(RunError, match="already holds a run; resume it"):
        train_mod.train(tiny_cfg(tmp_path, steps=10), progress=False)


def test_config_json_is_written_first_and_checkpoint_is_safe(tmp_path, monkeypatch):
    run = train_mod.train(tiny_cfg(tmp_path, steps=10), progress=False)
    assert json.loads((run / "config.json").read_text())["latent_dim"] == 2
    latest = checkpoint.latest_checkpoint(run)
    # a write that fails for the next checkpoint leaves the previous one current and loadable
    from genlab import files

    def broken(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    loaded = recipes.load_run(run)
    monkeypatch.setattr(files.os, "fsync", broken)
    with pytest.raises(WriteFailed, match="No space left on device"):
        checkpoint.save_checkpoint(run, 99, loaded.modules, {}, loaded.config)
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint(run) == latest
    assert checkpoint.checkpoint_steps(run) == [10]  # nothing of step 99 is left behind
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert recipes.load_run(run).step == 10


def test_state_file_loads_with_weights_only(tmp_path):
    run = train_mod.train(tiny_cfg(tmp_path, steps=10), progress=False)
    latest = checkpoint.latest_checkpoint(run)
    state = torch.load(run / "checkpoints" / latest["state"], weights_only=True)
    assert state["step"] == 10 and "optimizers" in state
    assert (run / "checkpoints" / latest["weights"]).suffix == ".safetensors"


def test_nan_loss_stops_naming_the_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    original = recipes.RECIPES["vae"]

    def step(s, x, y, step):
        if step == 14:
            x = x * float("nan")
        return original.step(s, x, y, step)

    monkeypatch.setitem(recipes.RECIPES, "vae", dataclasses.replace(original, step=step))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 14.*checkpoint \(step 10\)"):
        train_mod.train(tiny_cfg(tmp_path), progress=False)
    assert recipes.load_run(tmp_path / "run").step == 10


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunError, match="not a genlab run folder"):
        recipes.load_run(tmp_path)


def test_time_budget_stops_with_a_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    straight = train_mod.train(tiny_cfg(tmp_path, "straight", log_every=5), progress=False)

    class Clock:  # every reading of the loop's clock advances it by one second
        now = 0.0

        def perf_counter(self) -> float:
            Clock.now += 1.0
            return Clock.now

        def __getattr__(self, name):
            return getattr(time, name)

    monkeypatch.setattr(train_mod, "time", Clock())
    budget = tiny_cfg(tmp_path, "budget", log_every=5, max_minutes=0.1)  # 6 "seconds"
    run_dir = train_mod.train(budget, progress=False)
    stopped = checkpoint.read_log(run_dir)[-1]
    assert 1 <= stopped["step"] < 30 and stopped["train_seconds"] >= 6
    assert checkpoint.latest_checkpoint(run_dir)["step"] == stopped["step"]
    train_mod.train(resume=run_dir, progress=False)  # the budget is spent: nothing more
    assert checkpoint.latest_checkpoint(run_dir)["step"] == stopped["step"]
    train_mod.train(resume=run_dir, progress=False, max_minutes=0.0)  # lifted: to the end
    a, b = checkpoint.load_weights(straight)[0], checkpoint.load_weights(run_dir)[0]
    for name in a:
        for key in a[name]:
            torch.testing.assert_close(a[name][key], b[name][key], rtol=0, atol=0)
    steps = [r["step"] for r in checkpoint.read_log(run_dir)]
    assert steps == sorted(steps) and steps[-1] == 30 and stopped["step"] in steps


def test_keep_checkpoints_and_pick_a_step(tmp_path):
    from conftest import run_cli

    run = train_mod.train(tiny_cfg(tmp_path, steps=30, keep_checkpoints=0), progress=False)
    assert checkpoint.checkpoint_steps(run) == [10, 20, 30]
    assert recipes.load_run(run, step=10).step == 10 and recipes.load_run(run).step == 30
    early = recipes.load_run(run, step=10).model.state_dict()
    late = recipes.load_run(run).model.state_dict()
    assert not all(torch.equal(early[k], late[k]) for k in early)
    code, out, err = run_cli("sample", str(run), "-n", "2", "--step", "20", "--out",
                             str(tmp_path / "s"))
    assert code == 0, err
    code, _, err = run_cli("evaluate", str(run), "--step", "15", "--k", "2")
    assert code == 2 and err.count("\n") == 1
    assert "keeps no checkpoint of step 15; it has steps [10, 20, 30]" in err
    default = train_mod.train(tiny_cfg(tmp_path, "two", steps=30), progress=False)
    assert checkpoint.checkpoint_steps(default) == [20, 30]  # keep_checkpoints 2
