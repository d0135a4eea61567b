"""The denoiser at 16 bits: noise drawn, rounded and scored at 65535 levels, not 256."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from genlab.corruption import NOISY_TEST_SEED, fixed_noisy, gaussian_noise, poisson_noise
from genlab.images import to_depth, to_float
from genlab.recipes import gan as gan_recipe
from genlab.recipes import make_config
from genlab.samplers import denoise_classical

SIDE = 16


def smooth_16bit(n: int, seed: int) -> np.ndarray:
    """Bright discs on a ramp, at 16-bit levels that are not multiples of 257 (not 8-bit
    images scaled up)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(4, 12, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 16
        out.append(8000 + 900 * xx + 30000 * disc + rng.integers(0, 97, (SIDE, SIDE)))
    return np.clip(np.stack(out), 0, 65535).astype(np.uint16)


@pytest.fixture
def deep_folder(tmp_path: Path) -> Path:
    root = tmp_path / "deep"
    for split, n, seed in (("train", 16, 0), ("test", 4, 1)):
        (root / split).mkdir(parents=True)
        for i, image in enumerate(smooth_16bit(n, seed)):
            Image.fromarray(image).save(root / split / f"{i:03d}.png")
    return root


def test_noise_keeps_its_meaning_at_16_bits():
    """Poisson at peak 30 on 16-bit grey 30000: counts ~ Poisson(30000 / 65535 * 30), scaled by
    65535 / 30; Gaussian sigma 10 (8-bit levels) has sd 10 * 257 at 16 bits."""
    x = torch.full((300, 300), 30000.0)
    noisy = poisson_noise(x, 30.0, torch.Generator().manual_seed(0), white=65535.0)
    counts = noisy * 30 / 65535
    assert torch.allclose(counts, counts.round(), atol=1e-3)  # whole photons
    assert counts.mean().item() == pytest.approx(30000 / 65535 * 30, rel=0.01)
    assert noisy.var().item() == pytest.approx(30000 * 65535 / 30, rel=0.02)
    g = gaussian_noise(x, 10.0, torch.Generator().manual_seed(1), white=65535.0)
    assert g.std().item() == pytest.approx(2570, rel=0.01)
    deep = torch.full((1, 1, 50, 50), 30000, dtype=torch.uint16)
    fixed = fixed_noisy(deep, "poisson", 1000.0, 25.0, 7, white=65535.0)
    assert fixed.dtype == torch.uint16
    assert (fixed.int() % 257 != 0).float().mean() > 0.9  # not 8-bit levels scaled up


def test_training_noise_is_drawn_at_the_stored_depth():
    cfg = make_config("gan", peak=5000.0, width=8)
    x = to_float(torch.from_numpy(smooth_16bit(2, 3)).unsqueeze(1))
    deep = gan_recipe.noisy_copy(cfg, x, torch.Generator().manual_seed(0), torch.uint16)
    levels = to_depth(deep, torch.uint16).int()
    assert (levels % 257 != 0).float().mean() > 0.9
    shallow = gan_recipe.noisy_copy(cfg, x, torch.Generator().manual_seed(0))
    assert torch.equal(to_depth(shallow, torch.uint8).int(),
                       ((shallow + 1) * 127.5).round().int())  # the 8-bit path is unchanged


def test_classical_baseline_scales_to_16_bits():
    """NLM at 16 bits on the 16-bit image is the 8-bit result times 257, up to the 8-bit
    rounding of the input."""
    clean = torch.from_numpy(smooth_16bit(1, 4)).unsqueeze(1).float()
    noisy16 = poisson_noise(clean, 50.0, torch.Generator().manual_seed(0), white=65535.0)
    out16 = denoise_classical(noisy16, "nlm", "poisson", 50.0, white=65535.0)
    out8 = denoise_classical(noisy16 / 257, "nlm", "poisson", 50.0)
    assert out16.max() > 255  # not clipped to 8-bit white
    torch.testing.assert_close(out16, out8 * 257, rtol=1e-4, atol=1.0)


def test_evaluate_and_denoise_a_16_bit_folder_at_16_bits(deep_folder, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "gan", "--dataset", f"folder:{deep_folder}", "--steps", "2",
                           "--batch-size", "8", "--width", "8", "--disc", "reference",
                           "--peak", "1000000", "--device", "cpu", "--run-dir", str(run))
    assert code == 0, err
    assert json.loads((run / "data.json").read_text())["dtype"] == "uint16"
    code, _, err = run_cli("evaluate", str(run), "--num-images", "4", "--baselines", "nlm",
                           "--device", "cpu")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["bits"] == 16 and metrics["num_images"] == 4

    # By hand: the same fixed noise, PSNR at data range 65535, the mean over the 4 images. At
    # 10^6 photons at white the noise (sd about 40 of 65535) is below an 8-bit step (257).
    clean = np.stack([np.asarray(Image.open(p)) for p in sorted((deep_folder / "test").iterdir())])
    gen = torch.Generator().manual_seed(NOISY_TEST_SEED)
    rate = torch.from_numpy(clean.astype(np.float32)) * np.float32(1e6 / 65535)
    counts = torch.poisson(rate, generator=gen).numpy()
    noisy = np.clip(np.rint(counts * np.float32(65535 / 1e6)), 0, 65535)
    mse = ((noisy - clean.astype(np.float64)) ** 2).reshape(4, -1).mean(1)
    by_hand = float(np.mean(10 * np.log10(65535.0**2 / mse)))
    assert metrics["methods"]["noisy"]["psnr"] == pytest.approx(by_hand, abs=1e-4)
    assert by_hand > 55
    # quantised to 8 bits first, as before, the score would be several dB lower
    mse8 = ((np.rint(noisy / 257) * 257 - clean) ** 2).reshape(4, -1).mean(1)
    assert float(np.mean(10 * np.log10(65535.0**2 / mse8))) < by_hand - 3
    # the baseline's output is kept at 16 bits too (clipped to 8-bit white it would score ~7 dB)
    assert metrics["methods"]["nlm_anscombe"]["psnr"] > 40
    assert math.isfinite(metrics["methods"]["gan"]["psnr"])

    out = tmp_path / "out"
    image = tmp_path / "big.png"  # the denoiser's receptive field needs 43x43 and more
    big = np.kron(smooth_16bit(1, 5)[0], np.ones((3, 3), np.uint16))
    Image.fromarray(big).save(image)
    code, stdout, err = run_cli("denoise", str(run), str(image), "--add-noise", "--peak", "1000",
                                "--out", str(out), "--device", "cpu")
    assert code == 0, err
    assert "(48x48x1, 16-bit)" in stdout and "PSNR" in stdout
    for name in ("big.png", "big_noisy.png"):
        written = np.asarray(Image.open(out / name))
        assert written.dtype == np.uint16 and written.shape == (48, 48)
    noise = np.asarray(Image.open(out / "big_noisy.png")).astype(np.int64) - big
    assert (noise % 257 != 0).mean() > 0.9  # drawn and stored at 16 bits
