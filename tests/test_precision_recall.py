"""Precision, recall, density and coverage against hand-computed values."""

from __future__ import annotations

import torch

from genlab.metrics import knn_radii, precision_recall


def test_hand_computed_one_dimensional_case():
    real = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    # k = 1: radii are the distance to the nearest other real point
    assert knn_radii(real, 1).tolist() == [1.0, 1.0, 1.0, 8.0]
    fake = torch.tensor([[0.5], [20.0]])  # fake radii (k = 1): 19.5 each
    m = precision_recall(real, fake, k=1)
    # 0.5 lies in the balls of 0 (r 1), 1 (r 1) and 2? |2 - 0.5| = 1.5 > 1: no; 10 (r 8)? 9.5 > 8
    assert m["precision"] == 0.5                     # 0.5 is inside, 20 is not
    assert m["density"] == (2 + 0) / 2               # balls holding each fake, over k = 1
    assert m["coverage"] == 0.5                      # the balls of 0 and 1 hold a fake
    assert m["recall"] == 1.0                        # every real is within 19.5 of a fake


def test_identical_sets_and_a_dropped_mode():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=gen)
    b = torch.randn(400, 8, generator=gen)
    same = precision_recall(a, b)
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert 0.7 < same["density"] < 1.3
    # two modes in the data, the "generator" covers one: precision stays, coverage halves
    real = torch.cat([a[:200] - 10, a[200:] + 10])
    collapsed = b[:400] + 10
    m = precision_recall(real, collapsed)
    assert m["precision"] > 0.8 and m["coverage"] < 0.55 and m["recall"] < 0.55
