"""Long runs on the real MNIST files (`make test-slow`; skipped by `make test`)."""

from __future__ import annotations

import pytest
from conftest import shared_data

import genlab

pytestmark = pytest.mark.slow


def test_default_beats_reference_at_equal_time_on_mnist(tmp_path):
    """20 reference epochs (~45 s here) against 13 default epochs (~41 s): measured 155.3 vs
    145.2 nats (IWAE-100, z = 2, grey-level BCE)."""
    root = str(shared_data("mnist"))
    common = dict(dataset="mnist", data_dir=root, download=False, latent_dim=2,
                  checkpoint_every=10**6, log_every=200)
    ref = genlab.train(genlab.make_config("vae", "reference", run_dir=str(tmp_path / "ref"),
                                          **common), plot=False, progress=False)
    new = genlab.train(genlab.make_config("vae", "default", epochs=13,
                                          run_dir=str(tmp_path / "def"), **common),
                       plot=False, progress=False)
    m_ref, m_new = genlab.evaluate(ref), genlab.evaluate(new)
    assert m_ref["loss_as_trained"] < 150
    assert m_new["nll_iwae_nats"] < m_ref["nll_iwae_nats"] - 5
