"""Issue 20's pure speed-ups of CMN training: the same numbers as the code they replaced.

* the ragged read's sorted-segment gather / sum (``memory.read.segment_gather`` and the sum in
  ``weighted_segment_sum``) against plain indexing and PyTorch's ``segment_reduce``, values and
  gradients bitwise, under the trainer's deterministic algorithms;
* TFRMSprop's dense step against the formula as it was written out, bitwise, over many steps.
"""

import pytest
import torch
from torch import nn

from memrec.memory.read import (RaggedMemory, ragged_attention_read, segment_gather,
                                segment_softmax, weighted_segment_sum)
from memrec.training.optim import TFRMSprop
from memrec.training.trainer import deterministic_algorithms


def random_ragged(seed: int, n_segments: int = 7, dim: int = 5):
    """Sorted segments with some empty ones, float32 keys/values and a query per segment."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, 6, (n_segments,), generator=g)
    sizes[1] = 0                                                       # an empty memory
    segment = torch.repeat_interleave(torch.arange(n_segments), sizes)
    values = torch.randn(len(segment), dim, generator=g, requires_grad=True)
    keys = torch.randn(len(segment), dim, generator=g, requires_grad=True)
    query = torch.randn(n_segments, dim, generator=g, requires_grad=True)
    return query, RaggedMemory(values, segment, n_segments, keys=keys)


def reference_read(query, memory):
    """The ragged dot-product read as it was before issue 20: plain indexing for the query per
    slot and the softmax's normaliser, PyTorch's own ``segment_reduce`` for the sum."""
    q = query[memory.segment]
    scores = (q * memory.keys).sum(-1)
    top = torch.full((memory.n_segments,), float("-inf")).scatter_reduce(
        0, memory.segment, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - top[memory.segment])
    total = torch.zeros(memory.n_segments).index_add(0, memory.segment, exp)
    weights = exp / total[memory.segment]
    sizes = torch.bincount(memory.segment, minlength=memory.n_segments)
    read = torch.segment_reduce(weights[:, None] * memory.values, "sum", lengths=sizes, axis=0)
    return read, weights


@pytest.mark.parametrize("seed", range(5))
def test_ragged_read_is_bitwise_the_indexing_version_with_gradients(seed):
    query, memory = random_ragged(seed)
    inputs = (query, memory.keys, memory.values)
    with deterministic_algorithms(True):
        outputs = []
        for read_fn in (ragged_attention_read, reference_read):
            read, weights = read_fn(query, memory)
            loss = (read.square().sum() + (weights * torch.arange(len(weights))).sum())
            outputs.append((read, weights, torch.autograd.grad(loss, inputs)))
    (read, weights, grads), (ref_read, ref_weights, ref_grads) = outputs
    assert torch.equal(read, ref_read) and torch.equal(weights, ref_weights)
    for grad, ref in zip(grads, ref_grads):
        assert torch.equal(grad, ref)


def test_segment_gather_and_sum_gradcheck_and_second_derivatives():
    segment = torch.tensor([0, 0, 2, 2, 2, 3])
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: segment_gather(t, segment), (x,))
    assert torch.autograd.gradgradcheck(lambda t: segment_gather(t, segment).square(), (x,))
    w = torch.rand(6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: weighted_segment_sum(a, b, segment, 5), (w, v))


def test_segment_gather_of_no_slot_and_segment_softmax_unsorted_fallback():
    x = torch.randn(3, 2, requires_grad=True)
    out = segment_gather(x, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 2)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros(3, 2))
    scores = torch.tensor([1.0, 2.0, 0.5, 3.0])
    unsorted = segment_softmax(scores, torch.tensor([1, 0, 1, 0]), 2)
    assert unsorted[[1, 3]].sum().item() == pytest.approx(1.0)
    assert unsorted[[0, 2]].sum().item() == pytest.approx(1.0)


def written_out_step(p, grad, ms, mom, lr, rho, mu, eps, wd):
    """TFRMSprop's dense update as it read before issue 20 (the oracle for bitwise equality)."""
    if wd:
        grad = grad.add(p, alpha=wd)
    ms.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    mom.mul_(mu).add_(lr * grad / (ms + eps).sqrt())
    p.sub_(mom)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_dense_rmsprop_step_is_bitwise_the_written_out_formula(wd):
    g = torch.Generator().manual_seed(1)
    p = nn.Parameter(torch.randn(40, 7, generator=g))
    expected = p.detach().clone()
    ms, mom = torch.ones_like(expected), torch.zeros_like(expected)
    opt = TFRMSprop([{"params": [p], "weight_decay": wd}], lr=3e-3, decay=0.9, momentum=0.9, eps=1e-10)
    for _ in range(20):
        grad = torch.randn(40, 7, generator=g) * torch.rand(40, 1, generator=g)
        p.grad = grad.clone()
        opt.step()
        with torch.no_grad():
            written_out_step(expected, grad, ms, mom, 3e-3, 0.9, 0.9, 1e-10, wd)
    assert torch.equal(p.detach(), expected)
    assert torch.equal(opt.state[p]["mean_square"], ms) and torch.equal(opt.state[p]["momentum"], mom)
