"""FD-infinity (Chong & Forsyth 2020): the Frechet distance against scipy's matrix square root and
in closed form, and FID extrapolated to infinite samples on Gaussians whose true distance is
known: much closer to it than the FID of the same few samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from genlab.metrics import fd_infinity, frechet_distance, gaussian_moments


def spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_agrees_with_scipy_sqrtm_and_the_closed_form():
    d = 12
    mu1 = torch.linspace(-1, 1, d, dtype=torch.float64)
    mu2 = torch.zeros(d, dtype=torch.float64)
    s1, s2 = spd(d, 1), spd(d, 2)
    root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float(((mu1 - mu2) ** 2).sum()) + float(np.trace(s1.numpy() + s2.numpy()
                                                                 - 2 * root))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # diagonal covariances: |mu1 - mu2|^2 + sum (a + b - 2 sqrt(a b))
    a, b = torch.rand(d, dtype=torch.float64) + 0.5, torch.rand(d, dtype=torch.float64) + 0.5
    closed = float((mu1**2).sum() + (a + b - 2 * (a * b).sqrt()).sum())
    assert frechet_distance(mu1, a.diag(), mu2, b.diag()) == pytest.approx(closed, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_gaussian_moments_are_numpys_mean_and_unbiased_covariance():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    mu, sigma = gaussian_moments(x)
    assert np.allclose(mu.numpy(), x.double().numpy().mean(0))
    assert np.allclose(sigma.numpy(), np.cov(x.double().numpy(), rowvar=False))
    with pytest.raises(ValueError, match=r"N >= 2, got shape \(1, 4\)"):
        gaussian_moments(x[:1])


def test_fd_infinity_is_much_closer_to_the_true_distance_than_fid_at_small_n():
    """Real: 20,000 draws of N(0, I_32); fake: 500 draws of N(0.1, 0.8^2 I_32). The true distance
    is 32 * 0.1^2 + 32 * (1 - 0.8)^2 = 1.6; the FID of 500 fakes is biased upwards by about a
    quarter of that. Over five draws of the fakes FD-infinity's error is a fraction of FID's."""
    d, n = 32, 500
    true = d * 0.1**2 + d * (1 - 0.8) ** 2
    real = torch.randn(20_000, d, generator=torch.Generator().manual_seed(100))
    fid_errors, inf_errors = [], []
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        fake = 0.1 + 0.8 * torch.randn(n, d, generator=gen)
        result = fd_infinity(real, fake, seed=seed)
        assert result["fd_inf_sizes"] == [100, 200, 300, 400, 500]
        fids = result["fd_inf_fids"]
        assert fids[-1] == pytest.approx(frechet_distance(*gaussian_moments(real),
                                                          *gaussian_moments(fake)), rel=1e-12)
        assert fids[0] > fids[-1] > true  # the bias shrinks as N grows
        fid_errors.append(fids[-1] - true)
        inf_errors.append(abs(result["fd_inf"] - true))
        # the fit: FD_inf + slope / N passes near each point
        for size, fid in zip(result["fd_inf_sizes"], fids):
            assert fid == pytest.approx(result["fd_inf"] + result["fd_inf_slope"] / size,
                                        rel=0.1)
    print(f"FID errors {fid_errors}, FD-infinity errors {inf_errors}")
    assert min(fid_errors) > 0.2 * true  # FID at 500 is far off
    assert np.mean(inf_errors) < 0.2 * np.mean(fid_errors), (inf_errors, fid_errors)


def test_fd_infinity_needs_two_subset_sizes():
    real = torch.randn(100, 3)
    with pytest.raises(ValueError, match=r"2 fakes give \[2\]"):
        fd_infinity(real, torch.randn(2, 3))
    assert math.isfinite(fd_infinity(real, torch.randn(10, 3))["fd_inf"])


def test_compare_reports_fd_infinity_beside_fid_on_the_same_features(one_thread, tmp_path):
    """The comparison's scorer fits FD-infinity on the features its FID uses: at the full N the
    fit's last point is torchmetrics' FID of the same sets; the report names the sizes."""
    from test_compare import state_with

    from genlab import comparison, reporting
    from genlab.recipes.scoring import Scorer

    scorer = Scorer("digits", None, False, 0)
    noise = torch.randn(scorer.real[:150].shape, generator=torch.Generator().manual_seed(0))
    scores = scorer.full((scorer.real[:150] + 0.3 * noise).clamp(-1, 1))
    assert scores["fd_inf_sizes"] == [30, 60, 90, 120, 150]
    assert scores["fd_inf_fids"][-1] == pytest.approx(scores["fid"], rel=1e-4)
    assert math.isfinite(scores["fd_inf"]) and scores["fd_inf"] < scores["fid"]
    state = state_with({"ddpm": dict(fid=(5.0, 0.2), fd_inf=(4.0, 0.3)),
                        "vae": dict(fid=(30.0, 1.0), fd_inf=(28.0, 1.0))}, seeds=3)
    for record in state["runs"].values():
        record["final"]["fd_inf_sizes"] = scores["fd_inf_sizes"]
    state.update(verdicts=comparison.verdicts(state), summary=comparison.summary(state),
                 budget=comparison.budget(state), rule=comparison.rule(state))
    state["settings"].update(dataset="digits", num_samples=150)
    page = reporting.compare_report(state, tmp_path / "report.html").read_text()
    assert "FD∞ (FID extrapolated to infinite N), fit over N = 30, 60, 90, 120, 150" in page
    assert "FID, N = 150 a set" in page
    tested = {t["measure"] for c in state["verdicts"] for p in c["parts"] for t in p["tests"]}
    assert "fid" in tested and "fd_inf" not in tested  # described, never a verdict's basis
