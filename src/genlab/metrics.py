"""Metrics: likelihood bounds (ELBO, IWAE), image fidelity (PSNR, SSIM), sample quality (FID/KID,
FID extrapolated to infinite samples, precision/recall), and mode collapse on a dataset of known
modes (modes covered, KL to uniform).

Functions take networks as arguments; nothing here imports the rest of genlab but its errors.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import ConfigError, DataError
from genlab.images import WHITE_8

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims, per image (Kingma & Welling,
    appendix B): -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def normal_kl(mean1: torch.Tensor, var1: torch.Tensor | float, mean2: torch.Tensor,
              var2: torch.Tensor | float) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element, for diagonal Gaussians."""
    var1, var2 = torch.as_tensor(var1), torch.as_tensor(var2)
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2).pow(2)) / var2 - 1)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor,
                                        std: torch.Tensor | float,
                                        half_bin: float = 1 / WHITE_8) -> torch.Tensor:
    """log P(x) per element for images x on the grid of [-1, 1] (bins of width 2 * half_bin:
    1/255 for 8-bit data), under N(mean, std^2) integrated over x's bin; the first and last bins
    reach to -inf and +inf, so the probabilities of all grid values sum to 1 (Ho et al. 2020,
    eq. 13)."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    upper = (x + half_bin - mean) / std
    lower = (x - half_bin - mean) / std
    log_cdf_upper = torch.special.log_ndtr(upper)             # x at -1: log P(X <= x + half)
    log_sf_lower = torch.special.log_ndtr(-lower)             # x at +1: log P(X >= x - half)
    mass = (torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp_min(1e-12)
    return torch.where(x < -1 + half_bin, log_cdf_upper,
                       torch.where(x > 1 - half_bin, log_sf_lower, mass.log()))


def _log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (x - mu).pow(2) / logvar.exp()).sum(-1)


@torch.no_grad()
def vae_bounds(net: nn.Module, x01: torch.Tensor, k: int = 100,
               gen: torch.Generator | None = None,
               batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per-image ELBO terms and the importance-weighted bound (Burda et al. 2016, eq. 8).

    With k samples z_j ~ q(z|x): log p(x) >= logsumexp_j [log p(x|z_j) + log p(z_j)
    - log q(z_j|x)] - log k, which tightens as k grows. Returns per-image tensors (nats):
    ``recon`` (E_q BCE, one sample), ``kl`` (analytic), ``elbo`` (-recon - kl, beta = 1) and
    ``iwae`` (the k-sample bound on log p(x)). The likelihood is Bernoulli on the values in x01.
    """
    device = next(net.parameters()).device
    out: dict[str, list[torch.Tensor]] = {"recon": [], "kl": [], "elbo": [], "iwae": []}
    for xb in x01.split(batch_size):
        xb = xb.to(device)
        b = xb.shape[0]
        mu, logvar = net.encode(xb)
        mu, logvar = mu.float(), logvar.float()
        kl = gaussian_kl(mu, logvar)
        eps = torch.randn((k, b, mu.shape[1]), generator=gen, device=device)
        z = mu + torch.exp(0.5 * logvar) * eps  # (k, B, z)
        logits = net.decode(z.reshape(k * b, -1)).float()
        target = xb.unsqueeze(0).expand(k, *xb.shape).reshape(k * b, *xb.shape[1:])
        log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        log_px_z = log_px_z.flatten(1).sum(1).view(k, b)
        log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = _log_normal(z, mu, logvar)
        log_w = log_px_z + log_pz - log_qz  # (k, B)
        iwae = torch.logsumexp(log_w, dim=0) - math.log(k)
        out["recon"].append(-log_px_z[0])
        out["kl"].append(kl)
        out["elbo"].append(log_px_z[0] - kl)
        out["iwae"].append(iwae)
    return {key: torch.cat(vals).cpu() for key, vals in out.items()}


def sharpness(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image mean gradient magnitude (forward differences) of ``images`` over that of
    ``reference``: 1 is as much edge energy as the clean image, < 1 blurrier, > 1 noisier."""
    def grad(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        dx, dy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
        return (dx[..., :-1, :].pow(2) + dy[..., :, :-1].pow(2)).sqrt().flatten(1).mean(1)

    return grad(images) / grad(reference).clamp_min(1e-8)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: 10 log10(range^2 / MSE)."""
    mse = (x.float() - ref.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


# --- GAN: image fidelity of the denoiser ---------------------------------------------------------


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004, eq. 13), averaged over channels.

    Local means, variances and covariance come from a ``win_size`` Gaussian window (sigma 1.5,
    normalised over the window) applied without padding, so only windows that lie inside the
    image count: the same value as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``. K1 = 0.01, K2 = 0.03. ``x`` and ``ref`` are (B, C, H, W).
    """
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"ssim window {win_size} is larger than the {x.shape[-2]}x{x.shape[-1]} "
                         "image; pass a smaller odd win_size")
    x, ref = x.double(), ref.double()
    b, c, h, w = x.shape
    coords = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    window = torch.outer(g, g)
    window = (window / window.sum()).to(x.device)[None, None]   # (1, 1, k, k)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t.reshape(b * c, 1, h, w), window)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(ref)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(ref * ref) - mu_y**2
    cov = blur(x * ref) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    s = luminance * (2 * cov + c2) / (var_x + var_y + c2)
    return s.reshape(b, c, -1).mean(-1).mean(-1).float()


def ssim_window(image_shape: tuple[int, ...]) -> int:
    """11 (Wang et al.), or the largest odd window that fits a smaller image (7 for 8x8 digits)."""
    side = min(image_shape[-2:])
    return 11 if side >= 11 else side - (1 - side % 2)


# --- sample quality in a feature network: FID / KID (used by DDPM, reusable by the GAN) ---------


@torch.no_grad()
def fid_kid(features: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 500,
            kid_subsets: int = 50, kid_subset_size: int = 1000, seed: int = 0
            ) -> dict[str, float]:
    """Frechet distance (Heusel et al. 2017) and kernel distance (Binkowski et al. 2018) between
    two image sets in the features of ``features``, computed by torchmetrics.

    ``features`` maps float (B, C, H, W) images in [-1, 1] to (B, D) and has an integer
    ``num_features`` (``models.classifier.Features``; Inception-v3 in the standard FID). ``real``
    and ``fake`` are float in [-1, 1]. FID is biased upwards for small sets (compare only at equal
    set sizes); KID is unbiased, and its std is over ``kid_subsets`` random subsets.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    features.eval()
    subset = min(kid_subset_size, len(real), len(fake))
    # Both sets are whole here: no merging with other processes' (torchmetrics would wait for
    # them when torch.distributed is initialised, as in a sweep run under torchrun)
    local = {"normalize": True, "sync_on_compute": False}
    fid = FrechetInceptionDistance(feature=features, **local)
    with warnings.catch_warnings():  # KID keeps every feature vector: a few MB at 128 dims
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=features, subsets=kid_subsets, subset_size=subset,
                                      **local)
    device = next(features.parameters()).device
    fid.to(device)
    kid.to(device)
    for images, is_real in ((real, True), (fake, False)):
        for batch in images.split(batch_size):
            batch = batch.to(device).float()
            fid.update(batch, real=is_real)
            kid.update(batch, real=is_real)
    torch.manual_seed(seed)  # KID draws its subsets with the global generator
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std),
            "num_real": len(real), "num_fake": len(fake), "kid_subset_size": subset}


def gaussian_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of (N, D) feature vectors, in float64 (the unbiased
    covariance, divided by N - 1, as torchmetrics' and pytorch-fid's FID take it)."""
    x = features.double()
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {tuple(features.shape)}")
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), as FID takes
    it (Heusel et al. 2017): |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).
    The trace of the matrix square root is that of (s1 sigma2 s1)^(1/2), s1 = sigma1^(1/2): a
    symmetric matrix with the same eigenvalues as sigma1 sigma2, so it comes from eigh, without
    the complex parts a general sqrtm leaves behind."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    w, v = torch.linalg.eigh(sigma1)
    s1 = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(s1 @ sigma2 @ s1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross)


def fd_infinity(real: torch.Tensor, fake: torch.Tensor, num_points: int = 5,
                smallest: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """FID extrapolated to infinitely many samples (FD-infinity; Chong & Forsyth 2020,
    "Effectively Unbiased FID and Inception Score and where to find them"): FID's bias
    falls as 1/N in the number N of fakes, so the Frechet distance of the real (N_r, D) features
    to random subsets of the (N, D) fake features at ``num_points`` sizes, evenly spaced from
    ``smallest`` * N to N, is fit by least squares as FID_N = FD_inf + slope / N, and FD_inf is
    the fit's value at 1 / N = 0. The real moments come from every real feature. Returns
    'fd_inf', 'fd_inf_slope', 'fd_inf_sizes' and 'fd_inf_fids' (the distance at each size; the
    last is the FID of all N fakes)."""
    n = len(fake)
    sizes = sorted({max(2, round(n * (smallest + (1 - smallest) * i / (num_points - 1))))
                    for i in range(num_points)})
    if len(sizes) < 2:
        raise ValueError(f"FD-infinity needs at least 2 distinct subset sizes; {n} fakes give "
                         f"{sizes}")
    mu_r, sigma_r = gaussian_moments(real)
    gen = torch.Generator().manual_seed(seed)
    fids = []
    for size in sizes:
        subset = fake[torch.randperm(n, generator=gen)[:size]]
        fids.append(frechet_distance(mu_r, sigma_r, *gaussian_moments(subset)))
    # least squares of FID_N on 1/N: the intercept is FD_inf
    inv = torch.tensor([1 / size for size in sizes], dtype=torch.float64)
    design = torch.stack([torch.ones_like(inv), inv], 1)                  # (points, 2)
    coef = torch.linalg.lstsq(design, torch.tensor(fids, dtype=torch.float64)[:, None]).solution
    return {"fd_inf": float(coef[0, 0]), "fd_inf_slope": float(coef[1, 0]),
            "fd_inf_sizes": sizes, "fd_inf_fids": fids}


def knn_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``points`` to its k-th nearest other row."""
    d = torch.cdist(points, points)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


@torch.no_grad()
def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al.
    2020) of ``fake`` feature vectors (M, D) against ``real`` ones (N, D), with k-nearest-neighbour
    balls: r_i is the distance of real i to its k-th nearest real neighbour.

    precision: share of fakes inside some real ball (fidelity); recall: share of reals inside
    some fake ball (fake radii; diversity); density: mean count of real balls holding a fake,
    over k (1 on average when the sets match); coverage: share of real balls holding at least one
    fake (robust diversity: a dropped mode lowers it)."""
    real, fake = real.double(), fake.double()
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = torch.cdist(real, fake)                                      # (N, M)
    inside = d <= r_real[:, None]                                    # fake j in real ball i
    return {"precision": float(inside.any(0).double().mean()),
            "recall": float((d <= r_fake[None, :]).any(1).double().mean()),
            "density": float(inside.double().sum(0).mean() / k),
            "coverage": float(inside.any(1).double().mean()),
            "k": k, "num_real": len(real), "num_fake": len(fake)}


# --- mode collapse on a dataset of known modes (Stacked MNIST) ----------------------------------


def mode_scores(modes: torch.Tensor, num_modes: int) -> dict[str, Any]:
    """How a sample set spreads over a dataset's ``num_modes`` known modes, as Unrolled GAN
    (Metz et al. 2017), VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018) report it
    on Stacked MNIST: the number of modes that at least one sample falls in, and the KL
    divergence of the samples' mode histogram p from the uniform one, KL(p || U) =
    sum_k p_k log(p_k * num_modes) = log(num_modes) - H(p), in nats (0 for a set spread evenly
    over every mode; log(num_modes / k) for one spread evenly over k of them). ``modes`` is (N,)
    integers in 0..num_modes - 1. Both depend on N: compare them at equal N
    (``expected_modes_covered``)."""
    modes = torch.as_tensor(modes).flatten().long()
    if num_modes < 1:
        raise ValueError(f"num_modes must be >= 1, got {num_modes}")
    if len(modes) == 0:
        raise ValueError("mode_scores needs at least one sample's mode, got none")
    if int(modes.min()) < 0 or int(modes.max()) >= num_modes:
        raise ValueError(f"modes must lie in 0..{num_modes - 1}, got {int(modes.min())}.."
                         f"{int(modes.max())}")
    counts = torch.bincount(modes, minlength=num_modes).double()
    p = counts[counts > 0] / len(modes)
    return {"modes_covered": int((counts > 0).sum()),
            "mode_kl": float((p * (p * num_modes).log()).sum()), "mode_num_samples": len(modes)}


def expected_modes_covered(num_modes: int, n: int) -> float:
    """The expected number of modes that ``n`` draws from the uniform distribution over
    ``num_modes`` modes cover: num_modes * (1 - (1 - 1 / num_modes)^n) (632 of 1,000 at n =
    1,000; 993 at n = 5,000): what a generator that draws the modes evenly reaches at that N."""
    return num_modes * -math.expm1(n * math.log1p(-1 / num_modes)) if num_modes > 1 else 1.0


def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights_path: str | Path,
                  batch_size: int = 100) -> float:
    """The standard FID: Inception-v3 pool features (2048), torchmetrics with torch-fidelity's
    port of the TF network, on weights the user supplies (no download): torch-fidelity's
    ``pt_inception-2015-12-05-6726825d.pth``, or the same tensors as .safetensors.

    ``real``/``fake`` are float (N, C, H, W) in [-1, 1]; grey images are repeated to RGB and every
    image is resized to 299x299 inside the metric. The file is read with weights_only=True (or
    safetensors) and handed to torch-fidelity as a re-saved copy, so no pickled object from it is
    ever executed.
    """
    import tempfile

    path = Path(weights_path)
    if not path.is_file():
        raise DataError(f"Inception weights {path}: no such file (expected torch-fidelity's "
                        f"pt_inception-2015-12-05-6726825d.pth or a .safetensors of it)")
    try:
        import torch_fidelity  # noqa: F401
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        raise ConfigError("the Inception FID needs torch-fidelity: pip install "
                          "'genlab[eval]'") from None
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable or unsafe file gets one line
        raise DataError(f"Inception weights {path}: not a weights-only state dict "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"Inception weights {path}: expected a dict of tensors")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "inception.pth"
        torch.save(state, copy)
        try:
            fid = FrechetInceptionDistance(feature=2048, normalize=True, sync_on_compute=False,
                                           feature_extractor_weights_path=str(copy))
        except RuntimeError as err:  # load_state_dict: missing/unexpected keys, shapes
            raise DataError(f"Inception weights {path}: do not fit torch-fidelity's "
                            f"Inception-v3 ({str(err).splitlines()[0][:120]})") from None
    for images, is_real in ((real, True), (fake, False)):
        for batch in images.split(batch_size):
            batch = (batch.float().clamp(-1, 1) + 1) / 2
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            fid.update(batch, real=is_real)
    return float(fid.compute())
