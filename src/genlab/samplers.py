"""Samplers of every family, one above the other. The image samplers (``sample_vae``,
``sample_gan``, ``denoise``, ``ancestral``, ``ddim``, ``flow_ode``) return images in [-1, 1]
whatever the network outputs (``tests/test_docstrings.py`` feeds them networks that overshoot);
the classical denoisers work on grey levels 0..white, as the noise model does; the rest are
helpers (timesteps, guidance, batching, slerp).

VAE: decode z ~ N(0, I). GAN: G(z), or the denoiser G(noisy). DDPM: ancestral sampling and DDIM.
Flow matching: Euler and Heun ODE solvers. ``in_batches`` draws any number of images from any of
them in batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from genlab.corruption import REFERENCE_PEAK
from genlab.diffusion import NoiseSchedule
from genlab.errors import ConfigError
from genlab.hardware import poll_threads
from genlab.images import WHITE_8, from_unit, to_float


@torch.no_grad()
def sample_vae(net: nn.Module, n: int, gen: torch.Generator | None = None,
               z: torch.Tensor | None = None) -> torch.Tensor:
    """Decode z ~ N(0, I) (or the given z); returns the Bernoulli means, mapped to [-1, 1]."""
    device = next(net.parameters()).device
    if z is None:
        z = torch.randn((n, net.latent_dim), generator=gen, device=device)
    probs = torch.sigmoid(net.decode(z.to(device)).float())  # (n, C, H, W) in [0, 1]
    return from_unit(probs)


# --- GAN -----------------------------------------------------------------------------------------


@torch.no_grad()
def denoise(net: nn.Module, noisy: torch.Tensor, batch_size: int = 64,
            precision: str = "fp32") -> torch.Tensor:
    """Run a denoising generator on images of any size; returns x0_hat in [-1, 1].

    ``noisy`` is (B, C, H, W) in [-1, 1]. The generator is fully convolutional but needs sides
    that are multiples of ``net.stride``: each image is padded by reflection on the bottom and
    right up to the next multiple, denoised, and cropped back. A grey-trained network denoises
    an RGB image one channel at a time. Works in batches of ``batch_size`` images, in fp32 or
    under bf16 autocast (``precision='bf16'``: 2.5x faster on this CPU, outputs within a grey
    level or so of fp32's).
    """
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    param = next(net.parameters())
    b, c, h, w = noisy.shape
    channels = net.in_channels
    if c != channels:
        if channels != 1:
            raise ValueError(f"the network denoises {channels}-channel images; got {c} channels")
        noisy = noisy.reshape(b * c, 1, h, w)                 # 1. one grey image per channel
    stride = net.stride
    pad_h, pad_w = -h % stride, -w % stride
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    # inputs follow the network's layout: a channels-last net (as load_denoiser and the
    # evaluator make it) runs 1.7x faster on this CPU with the same outputs
    weight = next((p for p in net.parameters() if p.dim() == 4), param)
    fmt = (torch.channels_last if weight.dim() == 4
           and weight.is_contiguous(memory_format=torch.channels_last)
           and not weight.is_contiguous() else torch.contiguous_format)
    out = []
    for chunk in noisy.split(batch_size):
        x = chunk.to(device=param.device, dtype=torch.float32)
        if pad_h or pad_w:                                     # 2. pad to the network's stride
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        x = x.contiguous(memory_format=fmt)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            x0_hat = net(x).float()[:, :, :h, :w]             # 3. denoise, crop back
        out.append(x0_hat.clamp(-1, 1).to(noisy.device))
    return torch.cat(out).reshape(b, c, h, w)


@torch.no_grad()
def sample_gan(net: nn.Module, n: int, gen: torch.Generator | None = None,
               z: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """DCGAN sampling: x = G(z) with z ~ N(0, I) (or the given z); images in [-1, 1]. A
    class-conditional generator draws class ``labels`` (default: 0, 1, ..., K-1, 0, ... in turn,
    as the diffusion samplers do)."""
    device = next(net.parameters()).device
    if z is None:
        z = torch.randn((n, net.latent_dim), generator=gen, device=device)
    classes = getattr(net, "num_classes", 0)
    if classes and labels is None:
        labels = torch.arange(len(z), device=device) % classes
    if labels is not None:
        if not classes:
            raise ConfigError("class labels were given, but this generator is unconditional")
        return net(z.to(device), labels.to(device)).float().clamp(-1, 1)
    return net(z.to(device)).float().clamp(-1, 1)


CLASSICAL_DENOISERS = ("nlm", "bm3d")
BM3D_MIN_SIZE = 9


def bm3d_available(image_shape: tuple[int, ...] | None = None) -> bool:
    """Whether the optional ``bm3d`` package (pip install 'genlab[eval]') can be imported, and
    (given ``image_shape``) whether it can denoise images of that size."""
    if image_shape is not None and min(image_shape[-2:]) < BM3D_MIN_SIZE:
        return False
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def denoise_classical(noisy: torch.Tensor, method: str, noise: str = "poisson",
                      peak: float = REFERENCE_PEAK, sigma: float = 25.0,
                      white: float = WHITE_8) -> torch.Tensor:
    """A classical baseline on each image and channel: non-local means (Buades et al. 2005,
    scikit-image) or BM3D (Dabov et al. 2007, the ``bm3d`` package).

    Both assume Gaussian noise of known sigma. Poisson noise is first stabilised: counts
    z = x / white * peak go through the Anscombe transform (noise about N(0, 1)), are denoised with
    sigma = 1, and come back through the exact unbiased inverse (Makitalo & Foi 2011). ``noisy``
    holds grey levels 0..white (255 or 65535), (B, C, H, W); returns float grey levels clipped
    to 0..white. ``peak`` (photons at white) and ``sigma`` (8-bit grey levels) mean the same at
    every depth, as in ``corruption``.
    """
    if method not in CLASSICAL_DENOISERS:
        raise ValueError(f"unknown classical denoiser {method!r}; expected one of "
                         f"{list(CLASSICAL_DENOISERS)}")
    if method == "bm3d" and not bm3d_available():
        raise ImportError("BM3D needs the optional bm3d package: pip install bm3d")
    if method == "bm3d" and min(noisy.shape[-2:]) < BM3D_MIN_SIZE:
        raise ValueError(f"BM3D needs images of at least {BM3D_MIN_SIZE}x{BM3D_MIN_SIZE} (larger "
                         f"than its 8x8 blocks; the bm3d package crashes on 8x8); got "
                         f"{noisy.shape[-1]}x{noisy.shape[-2]}")
    import numpy as np

    from genlab.corruption import anscombe, inverse_anscombe

    arr = noisy.detach().cpu().double().numpy()
    out = np.empty_like(arr)
    for i in np.ndindex(*arr.shape[:2]):
        x = arr[i]                                                 # (H, W) grey levels
        if noise == "poisson":
            y, s = anscombe(x * (peak / white)), 1.0              # 1. stabilise: noise ~ N(0, 1)
        else:
            y, s = x / white, sigma / WHITE_8
        y_hat = _classical(y, method, s)                           # 2. Gaussian denoiser
        if noise == "poisson":
            out[i] = inverse_anscombe(y_hat) * (white / peak)      # 3. unbiased inverse
        else:
            out[i] = y_hat * white
    return torch.from_numpy(out).float().clamp_(0.0, white)


def _classical(y, method: str, sigma: float):
    if method == "bm3d":
        import bm3d

        return bm3d.bm3d(y, sigma_psd=sigma)
    from skimage.restoration import denoise_nl_means

    # Small patches for 48x48 faces; h = 0.8 sigma with the fast mode's sigma correction
    # (scikit-image's recommendation), chosen on FER2013 training faces.
    return denoise_nl_means(y, patch_size=5, patch_distance=6, h=0.8 * sigma, sigma=sigma,
                            fast_mode=True)


# --- DDPM ----------------------------------------------------------------------------------------


def check_conditioning(net: nn.Module, y: torch.Tensor | None, guidance: float | None) -> None:
    """Refuse labels or a guidance scale that the network cannot use, with a one-line reason."""
    num_classes = getattr(net, "num_classes", 0)
    if num_classes == 0:
        if y is not None:
            raise ConfigError("class labels were given, but this run is unconditional "
                              "(train with --class-conditional true to sample by class)")
        if guidance is not None:
            raise ConfigError("a guidance scale needs a class-conditional run; this run is "
                              "unconditional")
        return
    if guidance is not None and y is None:
        raise ConfigError("a guidance scale needs class labels to guide towards (--class K)")
    if y is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ConfigError(f"class label {bad} is outside the trained range 0..{num_classes - 1}")


# The eta of genlab's user-facing DDIM (sample, evaluate, figures, training previews). Measured on
# the default preset's 30-minute MNIST model, 300 samples each (benchmarks/ddim_vs_ddpm.py):
# DDIM-50 FID 30.2 at eta 0, 20.0 at 0.5, 15.7 at 1, against 16.8 for ancestral DDPM-1000; the
# deterministic sampler (eta 0) stays one flag away (it maps noise to images one to one).
DEFAULT_DDIM_ETA = 1.0


def ddim_timesteps(num_steps: int, steps: int) -> list[int]:
    """``steps`` timesteps from T-1 down to 0, evenly spaced (the 'trailing' spacing, which starts
    from pure noise); with steps = T these are all timesteps."""
    if not 1 <= steps <= num_steps:
        raise ConfigError(f"DDIM steps must be between 1 and the run's T = {num_steps}, "
                          f"got {steps}")
    return torch.linspace(num_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()


def guided(net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
           guidance: float | None) -> torch.Tensor:
    """The network's prediction at (x_t, t, y) (DDPM: eps, flow: velocity); with a guidance
    scale w, classifier-free guidance (Ho & Salimans 2022): out_uncond + w (out_cond -
    out_uncond), so w = 1 is the plain conditional model. Guidance is linear in the output, so
    it applies to eps and velocity alike. Each call lets the CPU thread count adapt
    (``hardware.poll_threads``): the DDPM and flow samplers call it once per step."""
    poll_threads()
    if y is None or guidance is None or guidance == 1.0:
        return net(x_t, t, y).float()
    null = torch.full_like(y, net.null_label)
    both = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).float()
    out_cond, out_uncond = both.chunk(2)
    return out_uncond + guidance * (out_cond - out_uncond)


@torch.no_grad()
def ancestral(net: nn.Module, schedule: NoiseSchedule, shape: tuple[int, ...],
              y: torch.Tensor | None = None, guidance: float | None = None,
              gen: torch.Generator | None = None, variance: str = "posterior",
              clip_x0: bool = True, snapshots: dict[int, torch.Tensor] | None = None,
              snapshot_every: int = 100) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2). Returns images in [-1, 1].

    ``clip_x0`` clips the predicted x_0 to [-1, 1] and takes the posterior mean from it (eq. 7),
    as improved-diffusion does; without clipping this equals eq. 11's mean from eps. ``snapshots``,
    when given, receives x_t (on the CPU) keyed by the paper's t: T (the initial noise), every
    multiple of ``snapshot_every``, and 0 (the result).
    """
    check_conditioning(net, y, guidance)
    device = next(net.parameters()).device
    sigma = schedule.sigma(variance)
    x = torch.randn(shape, generator=gen, device=device)  # x_T
    if snapshots is not None:
        snapshots[schedule.num_steps] = x.cpu()
    for t in reversed(range(schedule.num_steps)):
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        eps = guided(net, x, t_batch, y, guidance)  # 1. predict the noise in x_t
        if clip_x0:  # 2. mean of p(x_{t-1} | x_t), from the clipped x_0 or from eps
            mu = schedule.posterior_mean_x0(x, t, schedule.predict_x0(x, t, eps).clamp(-1, 1))
        else:
            mu = schedule.posterior_mean(x, t, eps)
        x = mu
        if t > 0:  # 3. add noise, except at the last step
            x = x + float(sigma[t]) * torch.randn(shape, generator=gen, device=device)
        if snapshots is not None and (t % snapshot_every == 0):
            snapshots[t] = x.clamp(-1, 1).cpu()
    return x.clamp(-1, 1)


@torch.no_grad()
def ddim(net: nn.Module, schedule: NoiseSchedule, shape: tuple[int, ...], steps: int = 50,
         eta: float = 0.0, y: torch.Tensor | None = None, guidance: float | None = None,
         gen: torch.Generator | None = None, clip_x0: bool = True,
         x_T: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) on ``steps`` timesteps; eta = 0 is deterministic,
    eta = 1 with all T steps is ancestral DDPM with the posterior variance. Starts from ``x_T``
    when given, else fresh N(0, I) noise. Images in [-1, 1]."""
    check_conditioning(net, y, guidance)
    if eta < 0:
        raise ConfigError(f"DDIM eta must be >= 0, got {eta}")
    device = next(net.parameters()).device
    timesteps = ddim_timesteps(schedule.num_steps, steps)
    alpha_bar = schedule.alpha_bar.double().tolist()
    x = x_T.to(device) if x_T is not None else torch.randn(shape, generator=gen, device=device)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        ab, ab_prev = alpha_bar[t], (alpha_bar[t_prev] if t_prev >= 0 else 1.0)
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        eps = guided(net, x, t_batch, y, guidance)  # 1. predict the noise in x_t
        x0 = schedule.predict_x0(x, t, eps)  # 2. predicted x_0 (and the eps it implies)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5
        # 3. sigma_t(eta) = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev), eq. 16
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if t_prev >= 0 and sigma > 0:  # 4. fresh noise, except at the last step
            x = x + sigma * torch.randn(shape, generator=gen, device=device)
    return x.clamp(-1, 1)


def in_batches(draw: Callable[[tuple[int, ...], torch.Tensor | None], torch.Tensor], n: int,
               image_shape: tuple[int, ...], y: torch.Tensor | None = None,
               batch_size: int = 256, device: torch.device | str = "cpu",
               precision: str = "fp32") -> torch.Tensor:
    """n images (on the CPU) from ``draw(shape, labels)``, batch by batch, under bf16 autocast
    when ``precision`` is 'bf16'; ``y`` holds one label per image or is None."""
    if n <= 0:
        raise ConfigError(f"number of samples must be positive, got {n}")
    device = torch.device(device)
    out = []
    for start in range(0, n, batch_size):
        poll_threads()
        shape = (min(batch_size, n - start), *image_shape)
        labels = None if y is None else y[start:start + shape[0]].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out.append(draw(shape, labels).float().cpu())
    return torch.cat(out)


def slerp(z0: torch.Tensor, z1: torch.Tensor, w: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent or noise vectors (White 2016; Song et al. 2021 use
    it between DDIM noises): stays on the shell where Gaussian samples live, where a straight
    line would pass through low-norm, untypical points. Rows of ``z0``/``z1`` are flattened;
    ``w`` is one weight, or an (n, 1) tensor of one weight per row."""
    a, b = z0.flatten(1).double(), z1.flatten(1).double()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))[:, None]             # angle between the rows
    so = torch.sin(omega)
    near = so < 1e-6                                            # (anti)parallel: a straight line
    mix = (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.where(
        near, torch.ones_like(so), so)
    mix = torch.where(near, (1 - w) * a + w * b, mix)
    return mix.to(z0.dtype).view_as(z0)


# --- flow matching -------------------------------------------------------------------------------

FLOW_SOLVERS = ("euler", "heun")


def flow_steps(solver: str, nfe: int) -> int:
    """Solver steps within a budget of ``nfe`` network evaluations: Euler takes one per step,
    Heun two (the velocity of straight-path flow matching is defined at t = 0 too, so unlike
    Karras et al.'s Algorithm 1 the last step needs no Euler fallback). An odd budget leaves one
    evaluation unused for Heun."""
    if solver not in FLOW_SOLVERS:
        raise ConfigError(f"unknown ODE solver {solver!r}; expected one of {list(FLOW_SOLVERS)}")
    least = 1 if solver == "euler" else 2
    if nfe < least:
        raise ConfigError(f"the {solver} solver needs at least {least} function evaluation(s), "
                          f"got {nfe}")
    return nfe if solver == "euler" else nfe // 2


def flow_nfe(solver: str, nfe: int) -> int:
    """The evaluations a budget of ``nfe`` actually spends."""
    return flow_steps(solver, nfe) * (1 if solver == "euler" else 2)


@torch.no_grad()
def flow_ode(net: nn.Module, shape: tuple[int, ...], nfe: int = 20, solver: str = "heun",
             y: torch.Tensor | None = None, guidance: float | None = None,
             gen: torch.Generator | None = None, time_scale: float = 1.0,
             x1: torch.Tensor | None = None,
             snapshots: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from noise at t = 1 to data at t = 0 on a uniform time grid with
    Euler or Heun steps, spending at most ``nfe`` network evaluations (``flow_steps``). Starts
    from ``x1`` when given, else fresh N(0, I) noise; ``snapshots`` receives x_t (CPU) at every
    grid time, noise first. Returns images in [-1, 1]."""
    check_conditioning(net, y, guidance)
    steps = flow_steps(solver, nfe)
    device = next(net.parameters()).device
    x = x1.to(device) if x1 is not None else torch.randn(shape, generator=gen, device=device)
    times = torch.linspace(1.0, 0.0, steps + 1).tolist()

    def velocity(x_t: torch.Tensor, t: float) -> torch.Tensor:
        t_batch = torch.full((x_t.shape[0],), t * time_scale, device=device)
        return guided(net, x_t, t_batch, y, guidance)

    if snapshots is not None:
        snapshots.append(x.float().cpu())
    for t, t_next in zip(times, times[1:]):
        v = velocity(x, t)                                   # 1. slope at t
        x_next = x + (t_next - t) * v                        # 2. Euler step
        if solver == "heun":                                 # 3. Heun: average with the slope
            x_next = x + (t_next - t) * 0.5 * (v + velocity(x_next, t_next))  # at the end
        x = x_next
        if snapshots is not None:
            snapshots.append(x.float().clamp(-1, 1).cpu())
    return x.clamp(-1, 1)


# --- autoregressive (PixelCNN) -------------------------------------------------------------------


def pixelcnn_positions(shape: tuple[int, ...], start: int = 0) -> int:
    """Network calls per image of ``sample_pixelcnn``: one per pixel and channel (C x H x W),
    less the ``start`` positions given."""
    return shape[-3] * shape[-2] * shape[-1] - start


@torch.no_grad()
def sample_pixelcnn(net: nn.Module, shape: tuple[int, ...], y: torch.Tensor | None = None,
                    gen: torch.Generator | None = None, x: torch.Tensor | None = None,
                    start: int = 0) -> torch.Tensor:
    """Autoregressive sampling (van den Oord et al. 2016): positions in raster order, and within a
    pixel its channels in order; one network call per position, C x H x W calls per image.
    ``x`` with ``start`` > 0 holds given values for the first ``start`` positions (a completion);
    the rest are drawn. Returns images in [-1, 1] (256 levels: the data's grid; Bernoulli: -1 or
    1)."""
    device = next(net.parameters()).device
    channels, height, width = shape[-3:]
    x = torch.zeros(shape, device=device) if x is None else x.to(device).float().clone()
    for position in range(start, channels * height * width):
        i, rest = divmod(position, width * channels)
        j, c = divmod(rest, channels)
        logits = net(x, y)[:, :, c, i, j].float()            # 1. p(x_ij^c | x_<ij, x_ij^<c)
        if logits.shape[1] == 1:                              # 2. draw the value
            value = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=gen) * 2 - 1
        else:
            level = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen)[:, 0]
            value = to_float(level)
        x[:, c, i, j] = value                                 # 3. write it in for the next call
    return x
