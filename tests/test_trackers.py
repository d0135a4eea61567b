"""--log-with tensorboard: the log lines' scalars, the preview grids and the final metrics land in
TensorBoard event files under RUN/trackers, read back here with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli


def test_tensorboard_gets_scalars_previews_and_metrics(tmp_path: Path, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "vae"
    code, _, err = run_cli("train", "vae", "--dataset", "digits", "--steps", "20",
                           "--batch-size", "32", "--log-every", "5", "--checkpoint-every", "10",
                           "--log-with", "tensorboard", "--run-dir", str(run))
    assert code == 0, err
    code, _, err = run_cli("evaluate", str(run), "--k", "5")
    assert code == 0, err
    scalars, images = {}, set()
    for events in (run / "trackers").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
        images |= set(acc.Tags()["images"])
    assert sorted(scalars["loss"]) == [5, 10, 15, 20]
    assert {"kl", "recon", "images_per_s", "train_seconds"} <= set(scalars)
    assert any(tag.startswith("preview") for tag in images)
    assert scalars["eval/nll_iwae_nats"] == [20]


def test_missing_tracker_package_is_one_line(tmp_path: Path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    code, _, err = run_cli("train", "vae", "--dataset", "digits", "--steps", "2",
                           "--log-with", "wandb", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and err.count("\n") == 1 and "needs the wandb package" in err
