"""Erase-add writes on fixed-slot memories (NTM / DKVMN; RUM-F, NMRN).

    v_m ← v_m ⊙ (1 − w_m·e) + w_m·a

:func:`erase_add_write` applies one write (the serving path). The write is affine in the
memory, so a whole sequence needs no per-step autograd graph: :func:`affine_scan` runs
x_t = x_{t−1} ⊙ m_t + a_t with one fused op per step and a hand-written backward, and
:func:`erase_add_unroll` gives every state of a sequence with it (training);
:func:`erase_add_final` gives the final state only, touching just the rows with an event at
each step (encoding histories for evaluation and serving).

The write never changes ``mask``: these memories have every slot real from the start, so build
their initial state with the mask all True (``MemoryState.empty`` gives mask all False, which
suits the FIFO).
"""

from __future__ import annotations

import torch

from .state import MemoryState
from .unroll import UnrolledStates, check_shape, repeat_over_time

__all__ = ["erase_add_write", "erase_add_final", "affine_scan", "erase_add_unroll"]


def erase_add_write(state: MemoryState, weights: torch.Tensor, erase: torch.Tensor,
                    add: torch.Tensor) -> MemoryState:
    """NTM / DKVMN soft write: erase, then add, each slot in proportion to its weight.

        v_m ← v_m ⊙ (1 − w_m·e)      (erase; RUM eq. 14, spec §1.3)
        v_m ← v_m + w_m·a            (add)

    The caller computes the inputs: typically ``w = softmax(β·q Fᵀ)`` over the slots,
    ``e = σ(E q + b_e)`` and ``a = tanh(A q + b_a)``. ``erase`` should lie in [0, 1] and the
    weights in [0, 1] (a softmax) so that the erase only shrinks slots; nothing is clamped.
    A slot with weight 0 is returned unchanged (exactly, for finite inputs), so masked or
    unaddressed slots stay put when their weight is 0 (mask the address logits before the softmax). ``mask`` and ``keys`` are not changed.

    Parameters
    ----------
    state : MemoryState
        values [B, M, Dv].
    weights : [B, M]
        Write address w.
    erase : [B, Dv] or [B, M, Dv]
        Erase vector e (one per row, or one per slot).
    add : [B, Dv] or [B, M, Dv]
        Add vector a.

    Returns
    -------
    MemoryState
        Same mask and keys, new values [B, M, Dv].
    """
    B, M, Dv = state.values.shape
    check_shape("weights", weights, (B, M))
    e = _per_slot("erase", erase, B, M, Dv)                                     # [B, 1|M, Dv]
    a = _per_slot("add", add, B, M, Dv)                                         # [B, 1|M, Dv]
    w = weights.unsqueeze(-1)                                                   # [B, M, 1]
    values = state.values * (1 - w * e) + w * a                                 # v ⊙ (1 − w·e) + w·a
    return state.with_values(values)


def erase_add_final(state: MemoryState, weights: torch.Tensor, erase: torch.Tensor,
                    add: torch.Tensor, mask: torch.Tensor) -> MemoryState:
    """The memory after a padded sequence of erase-add writes: equals
    ``unroll(erase_add_write, state, (weights, erase, add), mask)``, but each step updates only
    the rows with a real event there, so the work follows the number of events, not B × T (a
    full-ranking batch pads every history to the longest one). Keeps one memory, not every
    state. weights [B, T, M], erase / add [B, T, Dv], mask bool [B, T] → MemoryState.
    """
    B, M, Dv = state.values.shape
    T = mask.shape[1]
    check_shape("weights", weights, (B, T, M))
    check_shape("erase", erase, (B, T, Dv))
    check_shape("add", add, (B, T, Dv))
    values = state.values.clone()
    for t in range(T):
        rows = mask[:, t].nonzero().flatten()
        if len(rows):
            w = weights[rows, t].unsqueeze(-1)                                  # [b, M, 1]
            new = values[rows] * (1 - w * erase[rows, t, None, :]) + w * add[rows, t, None, :]
            values.index_copy_(0, rows, new)           # autograd-safe: values[rows] is a copy
    return state.with_values(values)


class _AffineScan(torch.autograd.Function):
    """x_t = x_{t−1} ⊙ m_t + a_t over time-major tensors, with a hand-written backward:
    one fused op per step in each direction instead of an autograd graph per step."""

    @staticmethod
    def forward(ctx, initial, multiplier, increment):           # [B, ...], [T, B, ...], [T, B, ...]
        out = torch.empty_like(increment)
        previous = initial
        for t in range(len(increment)):
            torch.addcmul(increment[t], previous, multiplier[t], out=out[t])
            previous = out[t]
        ctx.save_for_backward(initial, multiplier, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        initial, multiplier, out = ctx.saved_tensors
        T = len(out)
        grad = torch.empty_like(grad_out)                       # dL/dx_t, through all later steps
        grad[T - 1] = grad_out[T - 1]
        for t in range(T - 2, -1, -1):
            torch.addcmul(grad_out[t], grad[t + 1], multiplier[t + 1], out=grad[t])
        previous = torch.cat([initial.unsqueeze(0), out[:-1]], dim=0)
        return grad[0] * multiplier[0], grad * previous, grad


def affine_scan(initial: torch.Tensor, multiplier: torch.Tensor, increment: torch.Tensor) -> torch.Tensor:
    """Every state of the affine recurrence x_t = x_{t−1} ⊙ m_t + a_t, x_{−1} = ``initial``.

    Erase-add writes are affine in the memory (m = 1 − w·e, a = w·a), so their unroll needs no
    per-step autograd graph: this runs one fused multiply-add per step forward and backward.

    initial [B, ...], multiplier / increment [B, T, ...] (same shape) → states [B, T, ...].
    """
    if multiplier.shape != increment.shape or multiplier.shape[:1] + multiplier.shape[2:] != initial.shape:
        raise ValueError(f"multiplier and increment must be [B, T, ...] with initial [B, ...]; got "
                         f"{tuple(multiplier.shape)}, {tuple(increment.shape)}, {tuple(initial.shape)}")
    if multiplier.shape[1] == 0:
        return increment.clone()
    time_major = lambda x: x.transpose(0, 1).contiguous()       # noqa: E731 — contiguous steps
    return _AffineScan.apply(initial, time_major(multiplier), time_major(increment)).transpose(0, 1)


def erase_add_unroll(state: MemoryState, weights: torch.Tensor, erase: torch.Tensor,
                     add: torch.Tensor, mask: torch.Tensor) -> UnrolledStates:
    """Every state of a sequence of erase-add writes: equals
    ``unroll(erase_add_write, state, (weights, erase, add), mask, return_all=True)``, computed
    with :func:`affine_scan` (a padded step has weight 0, so it leaves the memory exactly as is).

    weights [B, T, M], erase / add [B, T, Dv], mask bool [B, T] → :class:`UnrolledStates`.
    """
    B, M, Dv = state.values.shape
    T = mask.shape[1]
    check_shape("weights", weights, (B, T, M))
    check_shape("erase", erase, (B, T, Dv))
    check_shape("add", add, (B, T, Dv))
    w = (weights * mask[..., None]).unsqueeze(-1)                               # [B, T, M, 1]
    values = affine_scan(state.values, 1 - w * erase.unsqueeze(2), w * add.unsqueeze(2))
    return UnrolledStates(values, repeat_over_time(state.mask, T), repeat_over_time(state.keys, T))


def _per_slot(name: str, x: torch.Tensor, B: int, M: int, D: int) -> torch.Tensor:
    """[B, D] → [B, 1, D] (broadcast over slots); [B, M, D] passes through."""
    if tuple(x.shape) == (B, D):
        return x.unsqueeze(1)
    if tuple(x.shape) == (B, M, D):
        return x
    raise ValueError(f"{name} must be [B, Dv] = {(B, D)} or [B, M, Dv] = {(B, M, D)}, got {tuple(x.shape)}")
