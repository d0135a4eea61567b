"""Random-crop augmentation (--random-crop N): replicate padding, a seeded random window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import kill_at

from genlab import batching, checkpoint, recipes
from genlab import training as train_mod
from genlab.errors import ConfigError


def seed_drawing(offsets: list[int], padding: int) -> int:
    """A seed whose generator draws these (top, left) offsets first."""
    for seed in range(1000):
        gen = torch.Generator().manual_seed(seed)
        if torch.randint(0, 2 * padding + 1, (2, 1), generator=gen).flatten().tolist() == offsets:
            return seed
    raise AssertionError("no seed found")


def test_crop_by_hand():
    x = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3)
    # padded by 1 with its edges repeated:   0 0 1 2 2 / 0 0 1 2 2 / 3 3 4 5 5 / 6 6 7 8 8 / ...
    down_left = batching.random_crop(x, 1, torch.Generator().manual_seed(seed_drawing([0, 2], 1)))
    assert down_left.tolist() == [[[[1, 2, 2], [1, 2, 2], [4, 5, 5]]]]  # down 1, left 1
    centre = batching.random_crop(x, 1, torch.Generator().manual_seed(seed_drawing([1, 1], 1)))
    assert torch.equal(centre, x)
    up = batching.random_crop(x, 1, torch.Generator().manual_seed(seed_drawing([2, 1], 1)))
    assert up.tolist() == [[[[3, 4, 5], [6, 7, 8], [6, 7, 8]]]]


def test_each_image_and_channel_get_their_own_window_like_numpy():
    x = torch.randn(6, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    out = batching.random_crop(x, 2, torch.Generator().manual_seed(7))
    offsets = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(7))
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
    for b in range(6):
        top, left = offsets[:, b].tolist()
        np.testing.assert_array_equal(out[b].numpy(), padded[b, :, top:top + 5, left:left + 4])
    assert len({tuple(offsets[:, b].tolist()) for b in range(6)}) > 1  # not one shared shift


def tiny(tmp_path, name, **kw):
    values = dict(dataset="digits", steps=12, batch_size=16, log_every=1, checkpoint_every=5,
                  hidden=(16,), latent_dim=2, run_dir=str(tmp_path / name), seed=5,
                  device="cpu", precision="fp32", random_crop=1)
    values.update(kw)
    return recipes.make_config("vae", "reference", **values)


def test_negative_padding_is_refused():
    with pytest.raises(ConfigError, match="random_crop must be >= 0, got -1"):
        recipes.make_config("vae", random_crop=-1)


def test_seeded_crop_run_is_reproducible_resumes_exactly_and_differs_from_no_crop(
        tmp_path, monkeypatch):
    a = train_mod.train(tiny(tmp_path, "a"), progress=False)
    b = train_mod.train(tiny(tmp_path, "b"), progress=False)
    plain = train_mod.train(tiny(tmp_path, "plain", random_crop=0), progress=False)

    def losses(run):
        return [r["loss"] for r in checkpoint.read_log(run)]

    assert losses(a) == losses(b)
    assert losses(a)[0] != losses(plain)[0]  # the first batch was shifted
    with monkeypatch.context() as m:
        kill_at(m, "vae", 8)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train(tiny(tmp_path, "killed"), progress=False)
    train_mod.train(resume=tmp_path / "killed", progress=False)
    assert losses(tmp_path / "killed") == losses(a)
    w1 = checkpoint.load_weights(a)[0]["model"]
    w2 = checkpoint.load_weights(tmp_path / "killed")[0]["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
