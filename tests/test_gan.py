"""GAN networks, objectives, the denoising sampler and the fidelity metrics (CPU seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.metrics import psnr, sharpness, ssim
from genlab.models.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    PatchDiscriminator,
    ReferenceDiscriminator,
    ReferenceGenerator,
    UNetGenerator,
)
from genlab.objectives import gan_d_loss, gan_g_loss
from genlab.recipes import build_modules, make_config
from genlab.samplers import denoise, sample_gan


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=_seeded(seed)) * 2 - 1


# --- networks -------------------------------------------------------------------------------------


def test_reference_generator_and_discriminator_shapes():
    torch.manual_seed(0)
    g = ReferenceGenerator(1)
    x = _images((2, 1, 48, 48))
    out = g(x)
    assert out.shape == (2, 1, 48, 48)
    assert out.min() >= -1 and out.max() <= 1  # 2 * sigmoid - 1
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs] == [
        (64, 5, 1), (128, 3, 2), (128, 3, 2), (128, 3, 2), (64, 3, 2), (1, 5, 1)]
    d = ReferenceDiscriminator(2, (48, 48))
    assert d(out, x).shape == (2, 1)
    assert d.head.in_features == 128 * 12 * 12
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.3 for m in d.modules()) == 2


def test_unet_and_patch_discriminator_shapes():
    torch.manual_seed(0)
    g = UNetGenerator(1, width=8)
    x = _images((3, 1, 16, 20))
    assert g(x).shape == (3, 1, 16, 20)
    d = PatchDiscriminator(2, width=8)
    # 4x4 convs: 48 -> 24 -> 12 (stride 2), then 11 -> 10 (stride 1, padding 1).
    assert d(_images((2, 1, 48, 48)), _images((2, 1, 48, 48), 1)).shape == (2, 1, 10, 10)


def test_unet_is_residual():
    g = UNetGenerator(1, width=8)
    nn.init.zeros_(g.out.weight)
    nn.init.zeros_(g.out.bias)
    x = _images((2, 1, 12, 12))
    assert torch.equal(g(x), x)


def test_receptive_fields_match_the_measured_dependence_of_one_output_pixel():
    # The inputs with a non-zero gradient of one output pixel, over the four phases of the
    # stride-4 grid: their widest span is the receptive field the networks declare.
    torch.manual_seed(0)
    for g, expected in ((ReferenceGenerator(1), 19), (UNetGenerator(1, 8), 43)):
        spans = []
        for centre in (48, 49, 50, 51):
            x = _images((1, 1, 96, 96)).requires_grad_()
            g(x)[0, 0, centre, centre].backward()
            seen = x.grad[0, 0] != 0
            rows = torch.nonzero(seen.any(1)).flatten()
            cols = torch.nonzero(seen.any(0)).flatten()
            spans += [int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)]
        assert max(spans) == g.receptive_field == expected


def test_dcgan_shapes_and_divisibility():
    torch.manual_seed(0)
    g = DCGANGenerator((1, 8, 8), latent_dim=16, width=8)
    x = g(torch.randn(4, 16))
    assert x.shape == (4, 1, 8, 8) and x.abs().max() <= 1
    assert DCGANDiscriminator((1, 8, 8), 8)(x).shape == (4, 1)
    assert DCGANGenerator((3, 32, 32), 16, 8)(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="divisible by 4"):
        DCGANGenerator((1, 30, 30), 16, 8)


def test_the_class_conditional_dcgan_uses_its_labels_and_keeps_the_unconditional_weights():
    torch.manual_seed(0)
    g = DCGANGenerator((1, 8, 8), latent_dim=16, width=8, num_classes=3).eval()
    d = DCGANDiscriminator((1, 8, 8), 8, num_classes=3).eval()
    z = torch.randn(4, 16)
    a, b = g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.ones(4, dtype=torch.long))
    assert a.shape == (4, 1, 8, 8) and not torch.allclose(a, b)  # the label moves the image
    # projection discriminator: logit = w.h + b + <embed(y), h>, checked by hand
    y = torch.tensor([0, 1, 2, 1])
    h = d.net[:-1](a)
    expected = h @ d.net[-1].weight.T + d.net[-1].bias + (d.embed(y) * h).sum(1, keepdim=True)
    assert torch.allclose(d(a, y), expected, atol=1e-6)
    # sampling draws the classes in turn, or the one asked for
    torch.manual_seed(1)
    cycled = sample_gan(g, 6, torch.Generator().manual_seed(0))
    expected = g(torch.randn((6, 16), generator=torch.Generator().manual_seed(0)),
                 torch.arange(6) % 3).clamp(-1, 1)
    assert torch.allclose(cycled, expected)
    with pytest.raises(ConfigError, match="needs class labels"):
        g(z)
    with pytest.raises(ConfigError, match="takes none"):
        DCGANDiscriminator((1, 8, 8), 8)(a, y)
    with pytest.raises(ConfigError, match="generator is unconditional"):
        sample_gan(DCGANGenerator((1, 8, 8), 16, 8), 2, labels=torch.zeros(2, dtype=torch.long))
    # the unconditional networks' weights keep the names of earlier genlab versions
    assert set(DCGANDiscriminator((1, 8, 8), 8).state_dict()) == {
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.3.weight",
        "net.3.bias", "net.3.running_mean", "net.3.running_var", "net.3.num_batches_tracked",
        "net.6.weight", "net.6.bias"}
    assert "embed.weight" not in DCGANGenerator((1, 8, 8), 16, 8).state_dict()


def test_a_class_conditional_dcgan_trains_and_samples_by_class(tmp_path, one_thread):
    from genlab import recipes
    from genlab.training import train

    run_dir = train(make_config("dcgan", "default", dataset="digits", class_conditional=True,
                                width=8, steps=4, batch_size=16, log_every=2,
                                run_dir=str(tmp_path / "run")), progress=False)
    run = recipes.load_run(run_dir, "cpu")
    assert run.model.num_classes == 10
    opts = recipes.verb_options("dcgan", "sample", {"label": 7})
    images = recipes.get("dcgan").sample(run, 5, torch.Generator().manual_seed(0), opts)
    expected = sample_gan(run.model, 5, torch.Generator().manual_seed(0),
                          labels=torch.full((5,), 7))
    assert torch.equal(images, expected)
    with pytest.raises(ConfigError, match="labelled dataset"):
        build_modules(make_config("dcgan", "default", class_conditional=True), (1, 8, 8), 1)


def test_build_registers_gan_and_follows_the_config():
    cfg = make_config("gan", "default", width=8)
    modules = build_modules(cfg, (1, 48, 48), 7)
    assert set(modules) == {"model", "disc"}
    assert isinstance(modules["model"], UNetGenerator)
    assert isinstance(modules["disc"], PatchDiscriminator)
    ref = build_modules(make_config("gan", "reference"), (1, 48, 48), 7)
    assert isinstance(ref["model"], ReferenceGenerator)
    assert isinstance(ref["disc"], ReferenceDiscriminator)
    ablation = build_modules(make_config("gan", "default", adv_weight=0.0), (1, 48, 48), 7)
    assert set(ablation) == {"model"}
    gen = build_modules(make_config("dcgan", "default", width=8), (1, 8, 8), 10)
    assert isinstance(gen["model"], DCGANGenerator)
    assert isinstance(gen["disc"], DCGANDiscriminator)
    assert isinstance(gen["ema"], DCGANGenerator)  # the default preset averages the generator
    with pytest.raises(ConfigError, match="divisible by 4; got 30x30"):
        build_modules(cfg, (1, 30, 30), 7)
    with pytest.raises(ConfigError, match="needs adv_weight > 0"):
        make_config("dcgan", "default", adv_weight=0.0)


# --- objectives -----------------------------------------------------------------------------------


class MeanDisc(nn.Module):
    """A stand-in discriminator whose logit is the mean of its input (plus the condition's)."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        logit = x.flatten(1).mean(1, keepdim=True)
        return logit if cond is None else logit + cond.flatten(1).mean(1, keepdim=True)


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_gan_d_loss_hand_computed():
    x0 = torch.full((2, 1, 4, 4), 2.0)  # logit 2 for the real pair
    x_fake = torch.full((2, 1, 4, 4), -1.0, requires_grad=True)  # logit -1 for the fake
    loss, logs = gan_d_loss(MeanDisc(), x0, x_fake)
    # BCE(2, 1) = softplus(-2), BCE(-1, 0) = softplus(-1); halved as in pix2pix.
    expected = 0.5 * (_softplus(-2.0) + _softplus(-1.0))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logs["d_real"].item() == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-6)
    assert logs["d_fake"].item() == pytest.approx(1 / (1 + math.exp(1)), rel=1e-6)
    assert not loss.requires_grad  # the fake is detached: D's loss never reaches G
    cond = torch.full((2, 1, 4, 4), 1.0)  # shifts both logits by +1
    loss, _ = gan_d_loss(MeanDisc(), x0, x_fake, cond)
    assert loss.item() == pytest.approx(0.5 * (_softplus(-3.0) + _softplus(0.0)), rel=1e-6)


def test_gan_g_loss_hand_computed():
    x0 = torch.full((2, 1, 4, 4), 0.5)
    x_fake = torch.zeros((2, 1, 4, 4), requires_grad=True)
    loss, logs = gan_g_loss(MeanDisc(), x0, x_fake, None, l1_weight=100.0, adv_weight=1.0)
    # L1 = 0.5; D(fake) = logit 0, so the adversarial BCE(0, 1) = ln 2.
    assert logs["l1"].item() == pytest.approx(0.5)
    assert logs["g_adv"].item() == pytest.approx(math.log(2))
    assert loss.item() == pytest.approx(50 + math.log(2), rel=1e-6)
    loss.backward()
    # d/dx_fake of 100 * mean|x - 0.5| + softplus(-mean x): (-100 - 0.5) / 32 per pixel.
    assert torch.allclose(x_fake.grad, torch.full_like(x_fake, -100.5 / 32))
    ablation, logs = gan_g_loss(None, x0, x_fake.detach(), l1_weight=100.0)
    assert ablation.item() == pytest.approx(50.0) and "g_adv" not in logs
    dcgan, logs = gan_g_loss(MeanDisc(), None, x_fake.detach(), l1_weight=100.0)
    assert dcgan.item() == pytest.approx(math.log(2)) and "l1" not in logs


# --- samplers -------------------------------------------------------------------------------------


def test_denoise_pads_odd_sizes_by_reflection_and_crops_back():
    torch.manual_seed(0)
    g = UNetGenerator(1, width=8).eval()
    noisy = _images((3, 1, 13, 18))
    out = denoise(g, noisy)
    assert out.shape == (3, 1, 13, 18)
    # Independently: numpy's symmetric-without-edge padding is torch's 'reflect'.
    padded = np.pad(noisy.numpy(), ((0, 0), (0, 0), (0, 3), (0, 2)), mode="reflect")
    with torch.no_grad():
        expected = g(torch.from_numpy(padded))[:, :, :13, :18].clamp(-1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    # A multiple of the stride is passed through unpadded; batching does not change the result.
    even = _images((5, 1, 16, 16), 1)
    with torch.no_grad():
        assert torch.allclose(denoise(g, even), g(even).clamp(-1, 1), atol=1e-6)
    assert torch.allclose(denoise(g, even, batch_size=2), denoise(g, even), atol=1e-6)


def test_denoise_rgb_one_channel_at_a_time():
    torch.manual_seed(0)
    g = ReferenceGenerator(1).eval()
    rgb = _images((2, 3, 10, 9))
    out = denoise(g, rgb)
    assert out.shape == (2, 3, 10, 9)
    for c in range(3):
        assert torch.allclose(out[:, c:c + 1], denoise(g, rgb[:, c:c + 1]), atol=1e-6)
    g3 = UNetGenerator(3, 8)
    with pytest.raises(ValueError, match="denoises 3-channel images; got 2"):
        denoise(g3, _images((1, 2, 8, 8)))


def test_denoise_in_bf16_is_close_to_fp32_and_checks_its_argument():
    torch.manual_seed(0)
    g = UNetGenerator(1, width=8).eval()
    noisy = _images((4, 1, 16, 16))
    ref, low = denoise(g, noisy), denoise(g, noisy, precision="bf16")
    assert low.dtype == torch.float32 and low.shape == ref.shape
    # bf16 keeps 8 bits of mantissa: outputs differ, but by well under a grey level on average
    assert 0 < (low - ref).abs().max() < 0.1 and (low - ref).abs().mean() < 2 / 255
    with pytest.raises(ConfigError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        denoise(g, noisy, precision="fp16")


def test_sample_gan_seeded():
    torch.manual_seed(0)
    g = DCGANGenerator((1, 8, 8), 16, 8).eval()
    a, b = sample_gan(g, 6, _seeded(3)), sample_gan(g, 6, _seeded(3))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b)
    assert not torch.equal(a, sample_gan(g, 6, _seeded(4)))


# --- PSNR and SSIM on known pairs ----------------------------------------------------------------


def test_psnr_known_pairs():
    ref = torch.zeros(1, 1, 8, 8)
    assert psnr(ref + 0.1, ref).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    # Grey levels: half the pixels off by 10 -> MSE 50 -> 10 log10(255^2 / 50) = 31.1411 dB.
    grey = torch.full((1, 1, 8, 8), 100.0)
    off = grey.clone()
    off[..., ::2] += 10
    assert psnr(off, grey, 255.0).item() == pytest.approx(31.1411, abs=1e-4)


def test_ssim_known_pairs():
    x = _images((2, 1, 24, 24))
    assert torch.allclose(ssim(x, x, 2.0), torch.ones(2))
    # Flat images have no structure term: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 1e-4.
    a, b = torch.full((1, 1, 16, 16), 0.5), torch.full((1, 1, 16, 16), 0.25)
    assert ssim(a, b).item() == pytest.approx(0.2501 / 0.3126, rel=1e-6)
    with pytest.raises(ValueError, match="window 11 is larger than the 8x8 image"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    gen = np.random.default_rng(0)
    clean = gen.integers(0, 256, (48, 48)).astype(np.float64)
    clean = (clean + np.roll(clean, 1, 0) + np.roll(clean, 1, 1)) / 3  # some local structure
    noisy = np.clip(clean + gen.normal(0, 20, clean.shape), 0, 255)
    expected = structural_similarity(noisy, clean, data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    got = ssim(torch.from_numpy(noisy)[None, None], torch.from_numpy(clean)[None, None], 255.0)
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_sharpness_ratio_by_hand():
    ramp = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])[None, None]
    # forward differences on the top-left 2x2: dx = 1, dy = 0 -> magnitude 1; twice the ramp: 2
    assert float(sharpness(ramp, 2 * ramp)) == pytest.approx(0.5)
    assert float(sharpness(ramp, ramp)) == pytest.approx(1.0)
    diag = torch.tensor([[0.0, 1.0], [1.0, 2.0]])[None, None]  # dx = dy = 1 -> sqrt(2)
    assert float(sharpness(diag, ramp[..., :2, :2])) == pytest.approx(math.sqrt(2))
    noise = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    blurred = nn.functional.avg_pool2d(noise, 3, stride=1, padding=1)
    assert (sharpness(blurred, noise) < 1).all()
