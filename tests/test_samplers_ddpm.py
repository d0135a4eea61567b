"""DDPM and DDIM samplers and the DDPM loss against textbook formulas written out by hand."""

import math

import pytest
import torch
from torch import nn

from genlab.diffusion import NoiseSchedule
from genlab.errors import ConfigError
from genlab.objectives import ddpm_loss
from genlab.samplers import ancestral, ddim, ddim_timesteps, guided

pytestmark = pytest.mark.usefixtures("one_thread")


class AffineEps(nn.Module):
    """A toy eps-predictor eps_hat = a x + b t (unconditional)."""

    num_classes = 0

    def __init__(self, a: float = 0.3, b: float = 0.05) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = b

    def forward(self, x, t, y=None):
        return self.a * x + self.b * t.float().view(-1, 1, 1, 1)


class GaussianOracle(nn.Module):
    """The optimal eps-predictor when every pixel of x_0 ~ N(m, s^2): E[eps | x_t]."""

    num_classes = 0

    def __init__(self, schedule: NoiseSchedule, m: float, s: float) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.schedule, self.m, self.s = schedule, m, s

    def forward(self, x, t, y=None):
        ab = self.schedule.gather(self.schedule.alpha_bar, t, x)
        # x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps: jointly Gaussian, so E[eps | x_t] is linear
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.m) / (ab * self.s**2 + 1 - ab)


class LabelNet(nn.Module):
    """Class-conditional toy: eps_hat = x + y (the null label 2 gives x + 10)."""

    num_classes = 2
    null_label = 2

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        y = torch.full_like(t, 2) if y is None else y
        shift = torch.where(y == 2, 10.0, y.float()).view(-1, 1, 1, 1)
        return x + shift


def textbook_betas(T: int) -> list[float]:
    return [1e-4 + i * (0.02 - 1e-4) / (T - 1) for i in range(T)]


@pytest.mark.parametrize("clip_x0", [False, True])
def test_ddpm_step_equals_textbook_formula(clip_x0: bool) -> None:
    """Algorithm 2 of Ho et al. with sigma_t^2 = beta_tilde_t, by hand on a 1x2x2 tensor."""
    T, shape = 3, (1, 1, 2, 2)
    net = AffineEps()
    schedule = NoiseSchedule("linear", T)
    out = ancestral(net, schedule, shape, gen=torch.Generator().manual_seed(5), clip_x0=clip_x0)

    betas = textbook_betas(T)
    alpha_bar, prod = [], 1.0
    for b in betas:
        prod *= 1 - b
        alpha_bar.append(prod)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen).double()
    for t in [2, 1, 0]:
        alpha, ab = 1 - betas[t], alpha_bar[t]
        ab_prev = alpha_bar[t - 1] if t > 0 else 1.0
        eps = 0.3 * x + 0.05 * t
        if clip_x0:
            x0 = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
            mu = (betas[t] * math.sqrt(ab_prev) / (1 - ab) * x0
                  + math.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * x)
        else:
            mu = (x - betas[t] / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
        x = mu
        if t > 0:
            sigma = math.sqrt(betas[t] * (1 - ab_prev) / (1 - ab))
            x = x + sigma * torch.randn(shape, generator=gen).double()
    assert torch.allclose(out.double(), x.clamp(-1, 1), atol=1e-5)


def test_ddim_with_eta_one_and_all_steps_is_ddpm() -> None:
    T, shape = 40, (64, 1, 2, 2)
    net = AffineEps(0.2, 0.01)
    schedule = NoiseSchedule("cosine", T)
    x_ddpm = ancestral(net, schedule, shape, gen=torch.Generator().manual_seed(3), clip_x0=False)
    x_ddim = ddim(net, schedule, shape, steps=T, eta=1.0, gen=torch.Generator().manual_seed(3),
                  clip_x0=False)
    assert torch.allclose(x_ddpm, x_ddim, atol=1e-4)


def test_samplers_reach_the_data_distribution_of_a_toy_model() -> None:
    """x_0 ~ N(0.3, 0.2^2) per pixel with the exact eps-predictor: DDPM, DDIM eta = 1 and
    DDIM eta = 0 (all T = 1000 steps) end at that distribution; DDIM-50 nearly so (the ODE's
    discretisation error shrinks the spread slightly)."""
    T, shape, m, s = 1000, (4000, 1, 2, 2), 0.3, 0.2
    schedule = NoiseSchedule("cosine", T)
    net = GaussianOracle(schedule, m, s)
    runs = {
        "ddpm": ancestral(net, schedule, shape, gen=torch.Generator().manual_seed(0),
                            clip_x0=False),
        "ddim eta=1": ddim(net, schedule, shape, steps=T, eta=1.0,
                                  gen=torch.Generator().manual_seed(1), clip_x0=False),
        "ddim eta=0": ddim(net, schedule, shape, steps=T, eta=0.0,
                                  gen=torch.Generator().manual_seed(2), clip_x0=False),
    }
    for name, x in runs.items():
        assert x.mean().item() == pytest.approx(m, abs=0.01), name
        assert x.std().item() == pytest.approx(s, abs=0.01), name
    # and the two stochastic samplers agree with each other in distribution
    q = torch.tensor([0.1, 0.5, 0.9])
    a, b = runs["ddpm"].flatten(), runs["ddim eta=1"].flatten()
    assert torch.allclose(torch.quantile(a, q), torch.quantile(b, q), atol=0.015)
    fast = ddim(net, schedule, shape, steps=50, gen=torch.Generator().manual_seed(3),
                       clip_x0=False)
    assert fast.mean().item() == pytest.approx(m, abs=0.01)
    assert fast.std().item() == pytest.approx(s, abs=0.03)


def test_ddim_timesteps() -> None:
    assert ddim_timesteps(10, 4) == [9, 6, 3, 0]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert ddim_timesteps(1000, 50)[:2] == [999, 979]
    assert len(set(ddim_timesteps(1000, 999))) == 999
    with pytest.raises(ConfigError, match="between 1 and the run's T = 10, got 11"):
        ddim_timesteps(10, 11)


def test_snapshots() -> None:
    schedule = NoiseSchedule("linear", 10)
    snaps: dict[int, torch.Tensor] = {}
    out = ancestral(AffineEps(), schedule, (2, 1, 2, 2), gen=torch.Generator().manual_seed(0),
                      snapshots=snaps, snapshot_every=4)
    assert sorted(snaps) == [0, 4, 8, 10]
    assert torch.equal(snaps[0], out)
    assert snaps[10].abs().max() > 1  # the initial noise, unclamped


def test_classifier_free_guidance() -> None:
    net = LabelNet()
    x, t, y = torch.zeros(2, 1, 1, 1), torch.tensor([1, 1]), torch.tensor([0, 1])
    cond, uncond = torch.tensor([0.0, 1.0]), 10.0
    assert guided(net, x, t, y, None).flatten().tolist() == cond.tolist()
    assert guided(net, x, t, y, 1.0).flatten().tolist() == cond.tolist()
    assert guided(net, x, t, y, 0.0).flatten().tolist() == [uncond, uncond]
    expected = uncond + 3 * (cond - uncond)
    assert guided(net, x, t, y, 3.0).flatten().tolist() == expected.tolist()
    assert guided(net, x, t, None, None).flatten().tolist() == [uncond, uncond]


def test_bad_sampling_requests() -> None:
    schedule = NoiseSchedule("linear", 5)
    shape = (2, 1, 2, 2)
    with pytest.raises(ConfigError, match="this run is unconditional"):
        ancestral(AffineEps(), schedule, shape, y=torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="guidance scale needs a class-conditional run"):
        ddim(AffineEps(), schedule, shape, steps=5, guidance=2.0)
    with pytest.raises(ConfigError, match="class label 2 is outside the trained range 0..1"):
        ddim(LabelNet(), schedule, shape, steps=5, y=torch.tensor([0, 2]))
    with pytest.raises(ConfigError, match="needs class labels"):
        ddim(LabelNet(), schedule, shape, steps=5, guidance=2.0)
    with pytest.raises(ConfigError, match="got 6"):
        ddim(AffineEps(), schedule, shape, steps=6)


def test_ddpm_loss_by_hand() -> None:
    schedule = NoiseSchedule("cosine", 20)
    net = AffineEps()
    x0 = torch.rand((3, 1, 4, 4), generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss, logs = ddpm_loss(net, schedule, x0, gen=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    t = torch.randint(0, 20, (3,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    expected = 0.0
    for i in range(3):
        ab = schedule.alpha_bar[t[i]].item()
        x_t = math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * eps[i]
        expected += ((0.3 * x_t + 0.05 * t[i] - eps[i]) ** 2).mean().item() / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["loss"].item() == loss.item()
    loss.backward()
    assert net.a.grad is not None
