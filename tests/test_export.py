"""genlab export: a self-contained, reloadable folder (weights, config, data info, log, metrics,
sample grid, model card), and its upload to the Hugging Face Hub, tested against a local folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image
from safetensors.torch import load_file

import genlab
from genlab import checkpoint, plots, recipes
from genlab import training as train_mod
from genlab.errors import ConfigError, RunError
from genlab.images import to_uint8


def tiny_vae(tmp_path: Path, name: str = "vae", **kw) -> Path:
    values = dict(dataset="digits", steps=10, batch_size=32, log_every=5, checkpoint_every=5,
                  keep_checkpoints=0, hidden=(16,), latent_dim=2, ema_decay=0.9, seed=3,
                  device="cpu", precision="fp32", run_dir=str(tmp_path / name))
    values.update(kw)
    return train_mod.train(recipes.make_config("vae", "reference", **values), progress=False)


def front_matter(card: str) -> dict[str, list[str] | str]:
    """The YAML front matter of a model card (the flat keys and lists it uses)."""
    assert card.startswith("---\n")
    block = card.split("---\n")[1]
    out: dict[str, list[str] | str] = {}
    key = ""
    for line in block.splitlines():
        if line.startswith("- "):
            out.setdefault(key, [])
            out[key].append(line[2:])  # type: ignore[union-attr]
        else:
            key, _, value = line.partition(":")
            if value.strip():
                out[key] = value.strip()
    return out


def test_exported_weights_sample_bit_identically_and_step_picks_the_checkpoint(tmp_path):
    run = tiny_vae(tmp_path)
    out = genlab.export(run, tmp_path / "at5", step=5)
    latest = tmp_path / "at10"
    genlab.export(run, latest)
    assert recipes.load_run(out).step == 5 and recipes.load_run(latest).step == 10
    for folder, step in ((out, 5), (latest, 10)):
        source = genlab.sample(run, n=12, seed=4, step=step)
        assert torch.equal(genlab.sample(folder, n=12, seed=4), source)
        weights = load_file(folder / "checkpoints" / f"ckpt-{step:08d}.safetensors")
        original = load_file(run / "checkpoints" / f"ckpt-{step:08d}.safetensors")
        assert sorted(weights) == sorted(original)  # model and its EMA copy, nothing dropped
        assert all(torch.equal(weights[k], original[k]) for k in weights)
    assert not torch.equal(genlab.sample(out, n=12, seed=4), genlab.sample(latest, n=12, seed=4))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "checkpoints/ckpt-00000005.json",
                     "checkpoints/ckpt-00000005.safetensors",
                     "checkpoints/latest.json", "config.json", "data.json", "log.jsonl",
                     "sample_grid.png"]
    assert [r["step"] for r in checkpoint.read_log(out)] == [5]  # the log up to step 5
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (run / "config.json").read_text())
    # the grid is what `genlab sample OUT -n 16 --seed 0` draws, 8 per row
    drawn = plots.save_grid(to_uint8(genlab.sample(out, n=16, seed=0)),
                            tmp_path / "grid.png", nrow=8)
    assert np.array_equal(np.asarray(Image.open(out / "sample_grid.png")),
                          np.asarray(Image.open(drawn)))

    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "genlab" and meta["datasets"] == ["digits"]
    assert {"genlab", "vae", "unconditional-image-generation"} <= set(meta["tags"])
    assert "trained for **5 steps**" in card and "![sample_grid.png](sample_grid.png)" in card
    assert f'genlab.load_run("{out}")' in card and f"genlab sample {out} -n 16" in card
    assert "| `latent_dim` | 2 |" in card and "| `ema_decay` | 0.9 |" in card
    assert "Not evaluated yet" in card


def test_exported_folder_works_with_every_verb_but_resume(tmp_path):
    run = tiny_vae(tmp_path)
    code, stdout, err = run_cli("evaluate", str(run), "--k", "4", "--num-images", "50",
                                "--device", "cpu")
    assert code == 0, err
    out = tmp_path / "shared"
    code, stdout, err = run_cli("export", str(run), "--out", str(out))
    assert code == 0, err
    assert f"exported: {out}" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads((run / "metrics.json").read_text())
    card = (out / "README.md").read_text()
    assert "From `metrics.json` (step 10, test split)" in card
    assert f"| nll_iwae_nats | {metrics['nll_iwae_nats']:.4g} |" in card

    code, _, err = run_cli("sample", str(out), "-n", "4", "--out", str(tmp_path / "s"))
    assert code == 0 and (tmp_path / "s" / "0003.png").exists(), err
    code, _, err = run_cli("evaluate", str(out), "--k", "4", "--num-images", "50",
                           "--device", "cpu")
    assert code == 0, err
    again = json.loads((out / "metrics.json").read_text())
    assert again["nll_iwae_nats"] == metrics["nll_iwae_nats"]  # same weights, same seed
    for kind in ("curves", "interpolation"):
        code, _, err = run_cli("plot", str(out), kind)
        assert code == 0 and (out / "figures" / f"{kind}.png").exists(), err
    code, _, err = run_cli("train", "--resume", str(out))
    assert code == 2 and err.count("\n") == 1
    assert "is an exported model (weights only, no optimizer state)" in err and str(run) in err


def test_gan_exports_drop_the_discriminator_and_still_load(tmp_path, monkeypatch):
    dcgan = tmp_path / "dcgan"
    code, _, err = run_cli("train", "dcgan", "--dataset", "digits", "--steps", "2",
                           "--batch-size", "16", "--width", "8", "--latent-dim", "8",
                           "--device", "cpu", "--run-dir", str(dcgan))
    assert code == 0, err
    out = genlab.export(dcgan, tmp_path / "dcgan-export")
    names = {k.partition(".")[0] for k in load_file(out / "checkpoints/ckpt-00000002.safetensors")}
    assert names == {"model", "ema"}  # no discriminator: sampling never uses it
    assert set(recipes.load_run(out).modules) == {"model", "ema"}
    assert torch.equal(genlab.sample(out, n=6, seed=2), genlab.sample(dcgan, n=6, seed=2))

    from genlab.recipes import gan as gan_recipe

    monkeypatch.setattr(gan_recipe, "bm3d_available", lambda *shape: False)
    denoiser = train_mod.train(recipes.make_config(
        "gan", "default", dataset="digits", width=8, disc="reference", steps=2, batch_size=16,
        device="cpu", run_dir=str(tmp_path / "gan")), progress=False)
    out = genlab.export(denoiser, tmp_path / "gan-export")
    meta = front_matter((out / "README.md").read_text())
    assert meta["pipeline_tag"] == "image-to-image"
    assert f"genlab denoise {out} noisy.png" in (out / "README.md").read_text()
    assert Image.open(out / "sample_grid.png").size[0] > 100  # the clean/noisy/denoised rows
    assert set(recipes.load_run(out).modules) == {"model"}


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi: 'uploads' into a local folder."""

    hub: Path
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):
        FakeHfApi.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, **kw):
        FakeHfApi.calls.append(("upload_folder", {"repo_id": repo_id, **kw}))
        shutil.copytree(folder_path, FakeHfApi.hub / repo_id)


def test_push_to_hub_uploads_the_folder(tmp_path, monkeypatch):
    import huggingface_hub

    run = tiny_vae(tmp_path, steps=5)
    FakeHfApi.hub, FakeHfApi.calls = tmp_path / "hub", []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    out = tmp_path / "push"
    code, stdout, err = run_cli("export", str(run), "--out", str(out), "--push-to-hub",
                                "someone/tiny-vae", "--private")
    assert code == 0, err
    assert "pushed to https://huggingface.co/someone/tiny-vae" in stdout
    assert [c[0] for c in FakeHfApi.calls] == ["create_repo", "upload_folder"]
    assert FakeHfApi.calls[0][1] == {"repo_id": "someone/tiny-vae", "repo_type": "model",
                                     "private": True, "exist_ok": True}
    arrived = FakeHfApi.hub / "someone" / "tiny-vae"
    sent = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert sent == sorted(p.relative_to(arrived) for p in arrived.rglob("*") if p.is_file())
    assert all((out / p).read_bytes() == (arrived / p).read_bytes() for p in sent)
    assert 'snapshot_download("someone/tiny-vae")' in (arrived / "README.md").read_text()
    assert torch.equal(genlab.sample(arrived, n=4), genlab.sample(run, n=4))


def test_push_failures_and_refusals_are_one_line(tmp_path, monkeypatch):
    run = tiny_vae(tmp_path, steps=5)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "huggingface_hub", None)  # not installed
        code, _, err = run_cli("export", str(run), "--out", str(tmp_path / "x"),
                               "--push-to-hub", "a/b")
        assert code == 2 and err.count("\n") == 1 and "pip install 'genlab[hub]'" in err
        assert not (tmp_path / "x").exists()  # refused before writing anything

    import huggingface_hub

    class Offline(FakeHfApi):
        def create_repo(self, repo_id, **kw):
            raise OSError("no network\nsecond line")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    with pytest.raises(RunError, match=r"to the Hub repository a/b failed: no network; the "
                                       r"folder is written: upload it with `hf upload a/b"):
        genlab.export(run, tmp_path / "y", push_to_hub="a/b")
    assert (tmp_path / "y" / "README.md").exists()
    with pytest.raises(RunError, match="already exists and is not empty"):
        genlab.export(run, tmp_path / "y")
    with pytest.raises(RunError, match="into itself"):
        genlab.export(run, run)
    with pytest.raises(ConfigError, match="--private applies to the repository"):
        genlab.export(run, tmp_path / "z", private=True)
    with pytest.raises(RunError, match=r"keeps no checkpoint of step 3; it has steps \[5\]"):
        genlab.export(run, tmp_path / "w", step=3)
