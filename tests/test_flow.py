"""Flow matching: the loss against a hand computation, the ODE solvers against the exact transport
map of a Gaussian, evaluation counts, and the family end to end through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from torch import nn

from genlab.errors import ConfigError
from genlab.objectives import flow_loss, flow_times
from genlab.samplers import flow_nfe, flow_ode, flow_steps, slerp

SCALE = 1000.0


class GaussianVelocity(nn.Module):
    """The exact marginal velocity of the straight path when x_0 ~ N(m, s^2) per pixel:
    x_t ~ N(a, b^2) with a = (1 - t) m, b^2 = (1 - t)^2 s^2 + t^2, and
    v(x, t) = E[eps - x_0 | x_t = x] = -m + (t - (1 - t) s^2) / b^2 (x - a).
    Its flow maps noise z at t = 1 to m + s z at t = 0."""

    def __init__(self, m: float, s: float) -> None:
        super().__init__()
        self.m, self.s = m, s
        self.calls = 0
        self.anchor = nn.Parameter(torch.zeros(()))  # samplers read the device from a parameter

    def forward(self, x: torch.Tensor, t_scaled: torch.Tensor, y=None) -> torch.Tensor:
        self.calls += 1
        t = (t_scaled / SCALE).view(-1, *([1] * (x.dim() - 1))).double()
        a, b2 = (1 - t) * self.m, (1 - t) ** 2 * self.s**2 + t**2
        return (-self.m + (t - (1 - t) * self.s**2) / b2 * (x.double() - a)).float()


def test_flow_loss_is_velocity_regression_on_the_straight_path():
    x0 = torch.rand(4, 1, 3, 3) * 2 - 1
    seen = {}

    class Recorder(nn.Module):
        def forward(self, x_t, t, y=None):
            seen["x_t"], seen["t"] = x_t, t
            return torch.zeros_like(x_t)

    gen = torch.Generator().manual_seed(5)
    loss, logs = flow_loss(Recorder(), x0, gen=gen, sampling="uniform", time_scale=SCALE)
    # redraw the same t and eps by hand
    gen = torch.Generator().manual_seed(5)
    t = torch.rand(4, generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    t4 = t.view(-1, 1, 1, 1)
    assert torch.allclose(seen["t"], t * SCALE)
    assert torch.allclose(seen["x_t"], (1 - t4) * x0 + t4 * eps)
    assert math.isclose(loss.item(), ((eps - x0) ** 2).mean().item(), rel_tol=1e-6)
    assert logs["loss"] == loss


def test_time_samplings():
    gen = torch.Generator().manual_seed(0)
    t = flow_times(20000, "logit-normal", gen=gen)
    assert 0 < t.min() and t.max() < 1
    assert abs(t.median().item() - 0.5) < 0.01  # sigmoid of N(0, 1): median 1/2
    # P(t < sigmoid(1)) = P(n < 1) = 0.8413
    assert abs((t < torch.sigmoid(torch.tensor(1.0))).float().mean().item() - 0.8413) < 0.01
    u = flow_times(20000, "uniform", gen=gen)
    assert abs(u.mean().item() - 0.5) < 0.01
    with pytest.raises(ValueError, match="unknown time sampling 'beta'"):
        flow_times(3, "beta")


def test_solvers_reach_the_exact_transport_map_and_heun_beats_euler():
    m, s = 0.3, 0.5
    net = GaussianVelocity(m, s)
    z = torch.randn(2048, 1, 1, 1, generator=torch.Generator().manual_seed(1)) * 0.5
    exact = (m + s * z).clamp(-1, 1)
    errors = {}
    for solver in ("euler", "heun"):
        for nfe in (10, 20, 80):
            net.calls = 0
            x = flow_ode(net, z.shape, nfe, solver, x1=z, time_scale=SCALE)
            assert net.calls == nfe  # the budget, exactly, for even budgets
            errors[solver, nfe] = (x - exact).abs().max().item()
    assert errors["heun", 20] < 5e-3 and errors["heun", 80] < 5e-4
    assert errors["heun", 10] < errors["euler", 10] / 5
    # first order: halving the step halves Euler's error; second order: Heun's falls ~4x
    assert 1.8 < errors["euler", 10] / errors["euler", 20] < 2.2
    assert errors["heun", 20] / errors["heun", 80] > 9


def test_flow_sampling_matches_the_data_distribution():
    net = GaussianVelocity(0.2, 0.3)
    x = flow_ode(net, (8192, 1, 1, 1), 20, "heun", gen=torch.Generator().manual_seed(2),
                 time_scale=SCALE)
    assert abs(x.mean().item() - 0.2) < 0.02 and abs(x.std().item() - 0.3) < 0.02


def test_evaluation_counts_and_bad_budgets():
    assert [flow_steps("euler", n) for n in (1, 10)] == [1, 10]
    assert [flow_steps("heun", n) for n in (2, 10, 11)] == [1, 5, 5]
    assert flow_nfe("heun", 11) == 10 and flow_nfe("euler", 7) == 7
    with pytest.raises(ConfigError, match="heun solver needs at least 2"):
        flow_steps("heun", 1)
    with pytest.raises(ConfigError, match="unknown ODE solver 'rk4'"):
        flow_steps("rk4", 10)


def test_slerp_keeps_the_norm_and_hits_the_ends():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 1000, generator=gen), torch.randn(3, 1000, generator=gen)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    # nearly orthogonal Gaussian vectors: the midpoint keeps their norm, a straight line loses
    # a factor sqrt(2)
    assert torch.allclose(mid.norm(dim=1), (a.norm(dim=1) + b.norm(dim=1)) / 2, rtol=0.02)
    assert ((a + b) / 2).norm(dim=1).mean() < 0.75 * mid.norm(dim=1).mean()
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-5)  # parallel: no division by zero


genlab = run_cli


def test_flow_end_to_end(tmp_path: Path, one_thread, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "flow"
    code, _, err = genlab("train", "flow", "--dataset", "digits", "--channels", "8,16",
                          "--steps", "6", "--batch-size", "16", "--log-every", "3",
                          "--class-conditional", "--device", "cpu", "--run-dir", str(run))
    assert code == 0, err
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 and "grad_norm" in log[-1]
    for kind in ("path", "trajectories", "samples", "curves"):
        assert (run / "figures" / f"{kind}.png").stat().st_size > 1000
    code, out, err = genlab("sample", str(run), "-n", "4", "--solver", "euler", "--nfe", "3",
                            "--class", "7", "--guidance", "2", "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert (tmp_path / "s" / "0003.png").exists()
    code, _, err = genlab("sample", str(run), "--eta", "0", "--out", str(tmp_path / "s2"))
    assert code == 2 and err.count("\n") == 1
    assert "a flow run's sample does not take --eta; it takes --solver, --nfe" in err
    code, out, err = genlab("evaluate", str(run), "--num-samples", "40", "--nfe", "2,4",
                            "--solvers", "euler,heun", "--feature-steps", "20")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    for label, nfe in (("euler2", 2), ("euler4", 4), ("heun2", 2), ("heun4", 4)):
        assert metrics[f"nfe_{label}"] == nfe and metrics[f"fid_{label}"] >= 0
        assert metrics[f"num_samples_{label}"] == 40


def test_the_control_figure_of_a_class_conditional_run_adds_guidance_rows(tmp_path, monkeypatch):
    from genlab import recipes
    from genlab.checkpoint import Run
    from genlab.recipes import base
    from genlab.recipes import flow as flow_recipe

    cfg = recipes.make_config("flow", "default", dataset="digits", channels=(8, 8),
                              class_conditional=True, ema_sigma_rel=0.0)
    modules = recipes.build_modules(cfg, (1, 8, 8), 10)
    torch.manual_seed(0)
    for m in modules.values():  # random weights everywhere (the output layer starts at zero)
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.1)
        m.eval()
    run = Run(tmp_path, cfg, {"image_shape": [1, 8, 8], "classes": [str(i) for i in range(10)]},
              modules, 0)
    shown = []
    monkeypatch.setattr(base, "gallery_figure", lambda images, out, nrow: shown.append(images))
    flow_recipe.interpolation_figure(run, tmp_path / "x.png")  # 6 rows of 10 steps
    images = shown[0]
    assert images.shape == ((6 + len(base.GUIDANCE_ROWS)) * 10, 1, 8, 8)
    # the guidance rows share one noise per column; w = 1 is the plain conditional sampler
    gen = torch.Generator().manual_seed(0)
    torch.randn((12, 1, 8, 8), generator=gen)  # the six pairs of interpolation noises
    columns = torch.randn((10, 1, 8, 8), generator=gen)
    plain = flow_ode(run.model, columns.shape, 20, "heun", torch.arange(10), None, x1=columns,
                     time_scale=flow_recipe.TIME_SCALE)
    w1 = 6 + base.GUIDANCE_ROWS.index(1.0)
    assert torch.allclose(images[w1 * 10:(w1 + 1) * 10], plain, atol=1e-5)
    w0 = 6 + base.GUIDANCE_ROWS.index(0.0)
    assert not torch.allclose(images[w0 * 10:(w0 + 1) * 10], plain, atol=1e-3)
