"""TFRMSprop: TF1 semantics by hand, and lazy row updates for sparse gradients."""

import math

import pytest
import torch
from torch import nn

from memrec.training.optim import TFRMSprop


def test_one_dense_step_by_hand():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = TFRMSprop([p], lr=0.1, decay=0.9, momentum=0.5, eps=0.0)
    p.grad = torch.tensor([2.0, 0.0])
    opt.step()
    # ms = 0.9·1 + 0.1·4 = 1.3 ; mom = 0.1·2/√1.3 ; θ = 1 − mom
    assert p[0].item() == pytest.approx(1 - 0.2 / math.sqrt(1.3))
    assert p[1].item() == -2.0  # zero gradient, zero momentum: unchanged
    p.grad = torch.tensor([0.0, 0.0])
    opt.step()
    # momentum carries on: mom = 0.5·previous
    assert p[0].item() == pytest.approx(1 - 1.5 * 0.2 / math.sqrt(1.3))


def test_sparse_gradients_update_only_looked_up_rows():
    torch.manual_seed(0)
    sparse = nn.Embedding(5, 3, sparse=True)
    dense = nn.Embedding(5, 3)
    dense.weight.data.copy_(sparse.weight.data)
    opts = [TFRMSprop(m.parameters(), lr=0.05, momentum=0.9) for m in (sparse, dense)]
    ids = torch.tensor([1, 3, 3])
    for _ in range(2):
        for m, opt in zip((sparse, dense), opts):
            opt.zero_grad()
            m(ids).square().sum().backward()
            opt.step()
        ids = torch.tensor([1])  # second step: row 3 untouched
    before = dense.weight.data.clone()
    # rows never looked up keep their initial values in both
    assert torch.equal(sparse.weight[0], before[0]) and torch.equal(sparse.weight[4], before[4])
    # the first step is identical; afterwards the dense version keeps moving row 3 by momentum,
    # the lazy (TF) version leaves it where the first step put it
    assert torch.allclose(sparse.weight[1], dense.weight[1], atol=1e-6)
    assert not torch.allclose(sparse.weight[3], dense.weight[3])


def test_weight_decay_on_sparse_parameters_is_refused():
    emb = nn.Embedding(3, 2, sparse=True)
    opt = TFRMSprop(emb.parameters(), weight_decay=0.1)
    emb(torch.tensor([0])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()


def test_zero_initial_mean_square_keeps_the_lazy_rows_with_pytorchs_start():
    p = nn.Parameter(torch.tensor([1.0]))
    opt = TFRMSprop([p], lr=0.1, decay=0.9, momentum=0.0, eps=0.0, initial_mean_square=0.0)
    p.grad = torch.tensor([2.0])
    opt.step()
    # ms = 0.1·4 = 0.4 ; step = 0.1·2/√0.4
    assert p.item() == pytest.approx(1 - 0.2 / math.sqrt(0.4))
