"""The VAE objective and likelihood bounds against hand-computed values and quadrature."""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.metrics import gaussian_kl, psnr, vae_bounds
from genlab.models.vae import MLPVAE, ConvVAE
from genlab.objectives import vae_loss


def test_kl_is_zero_at_the_prior_and_matches_hand_values():
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0] * 3
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2) = 0.5 * (1 + 0) + 0.5 * (2 - 1 - log 2)
    expected = 0.5 + 0.5 * (1 - math.log(2.0))
    assert abs(gaussian_kl(mu, logvar).item() - expected) < 1e-6


class FixedNet(nn.Module):
    """encode -> (mu=0, logvar=-inf-ish), decode -> fixed logits: makes the loss hand-computable."""

    latent_dim = 1

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def encode(self, x01):
        b = x01.shape[0]
        return torch.zeros(b, 1), torch.full((b, 1), -60.0)

    def decode(self, z):
        return self.logits.expand(z.shape[0], *self.logits.shape[1:])

    def forward(self, x01, eps=None):
        mu, logvar = self.encode(x01)
        return self.decode(mu), mu, logvar


def test_bce_reduction_sum_over_pixels_mean_over_batch():
    logits = torch.tensor([[[[0.0, 2.0]]]])  # (1, 1, 1, 2)
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.5, 1.0]]]])  # batch of 2
    net = FixedNet(logits)
    loss, logs = vae_loss(net, x, beta=0.0)
    p = [0.5, 1 / (1 + math.exp(-2))]

    def bce(t, q):
        return -(t * math.log(q) + (1 - t) * math.log(1 - q))

    per_image = [bce(1, p[0]) + bce(0, p[1]), bce(0.5, p[0]) + bce(1, p[1])]
    assert abs(logs["recon"].item() - sum(per_image) / 2) < 1e-5
    assert abs(loss.item() - sum(per_image) / 2) < 1e-5


def test_beta_weights_the_kl():
    torch.manual_seed(0)
    net = MLPVAE((1, 4, 4), 3, (8,))
    x = torch.rand(5, 1, 4, 4)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    l0, logs0 = vae_loss(net, x, beta=0.0, gen=g1)
    l1, logs1 = vae_loss(net, x, beta=2.5, gen=g2)
    assert torch.allclose(l1, logs1["recon"] + 2.5 * logs1["kl"])
    assert torch.allclose(logs0["recon"], logs1["recon"]) and logs1["kl"] > 0


def test_shapes_and_ranges():
    mlp = MLPVAE((1, 28, 28), 2)
    in_features = [m.in_features for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert in_features == [784, 256, 256, 2, 256]
    logits, mu, logvar = mlp(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 2)
    conv = ConvVAE((3, 32, 32), 8, (8, 16))
    logits, mu, _ = conv(torch.rand(2, 3, 32, 32), torch.randn(2, 8))
    assert logits.shape == (2, 3, 32, 32) and mu.shape == (2, 8)


class TinyLatentModel(nn.Module):
    """z in R^1; p(x|z) Bernoulli over 2 pixels with logits (a z + b); q(z|x) a fixed Gaussian."""

    latent_dim = 1

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.5, -2.0]))
        self.b = nn.Parameter(torch.tensor([0.3, 0.1]))

    def encode(self, x01):
        b = x01.shape[0]
        return x01.flatten(1)[:, :1] - 0.5, torch.full((b, 1), math.log(0.8))

    def decode(self, z):
        return (z * self.a + self.b).view(z.shape[0], 1, 1, 2)


def test_iwae_converges_to_log_likelihood_by_quadrature():
    net = TinyLatentModel()
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    # log p(x) = log integral N(z; 0, 1) prod_i Bern(x_i; sigmoid(a_i z + b_i)) dz, by quadrature
    z = torch.linspace(-10, 10, 200001)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi))
    exact = []
    for xi in x.view(2, 2):
        logits = z[:, None] * net.a.detach() + net.b.detach()
        log_lik = -nn.functional.binary_cross_entropy_with_logits(
            logits, xi.expand_as(logits), reduction="none").sum(1)
        exact.append(torch.logsumexp(log_prior + log_lik, 0) + math.log(z[1] - z[0]))
    bounds = vae_bounds(net, x, k=20000, gen=torch.Generator().manual_seed(0))
    for est, ref in zip(bounds["iwae"].tolist(), exact, strict=True):
        assert abs(est - ref.item()) < 0.01
    # k = 1 estimates the ELBO: on average below log p(x), and equal in expectation to the
    # analytic-KL ELBO that vae_bounds also reports
    runs = [vae_bounds(net, x, k=1, gen=torch.Generator().manual_seed(s)) for s in range(2000)]
    k1 = torch.stack([r["iwae"] for r in runs]).mean(0)
    elbo = torch.stack([r["elbo"] for r in runs]).mean(0)
    assert (k1 < torch.stack(exact) - 0.05).all()
    assert torch.allclose(k1, elbo, atol=0.05)


def test_psnr_hand_values():
    ref = torch.zeros(1, 1, 2, 2)
    x = torch.tensor([[[[0.1, 0.1], [0.1, 0.1]]]])
    assert abs(psnr(x, ref).item() - 20.0) < 1e-4  # MSE 0.01 -> 10 log10(1 / 0.01)
