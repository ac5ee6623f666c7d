"""Gated writes: per-slot interpolation towards an update (KSR).

    v_m ← (1 − z_m)·v_m + z_m·u_m,   z_m = σ(⟨v_m, u_m⟩) (or a given gate)

:func:`gated_write` applies one write (the serving path). The gate depends on the memory, so
the write is not affine and has no closed-form scan; :func:`gated_unroll` still gives every
state of a sequence with one fused step per event forward and backward (:class:`_GatedScan`)
instead of an autograd graph per step (training), and :func:`gated_final` gives the final state
only, each step touching just the rows with an event and keeping one memory (encoding
histories for evaluation and serving). The write never changes ``mask``: build the initial
state with the mask all True.
"""

from __future__ import annotations

import torch

from .state import MemoryState
from .unroll import UnrolledStates, check_shape, final_values, repeat_over_time

__all__ = ["gated_write", "gated_unroll", "gated_final"]


def gated_write(state: MemoryState, update: torch.Tensor, gate: torch.Tensor | None = None) -> MemoryState:
    """Per-slot gated interpolation towards an update (KSR's write, spec §2.3).

        z_m = σ(⟨v_m, u_m⟩)           when ``gate`` is None (KSR: paper and official code)
        v_m ← (1 − z_m)·v_m + z_m·u_m

    For KSR, slot a is relation a's value and the update for item i is the TransE-predicted tail
    ``u_a = e_i + r_a`` (paper, RecBole) or ``u_a = tanh(W e_i + b) + r_a`` (official Theano
    code); both gate by the dot product between the current slot and its update, so both are
    this function with ``gate=None`` and the caller choosing ``update``. Note that a zero memory
    gives z = σ(0) = 1/2 on the first write. ``mask`` and ``keys`` are not changed.

    Parameters
    ----------
    state : MemoryState
        values [B, M, Dv].
    update : [B, M, Dv]
        The candidate content u_m for every slot.
    gate : [B, M] or [B, M, Dv], optional
        A given gate z in [0, 1] (a learned gate, or a per-dimension one). Default: σ(⟨v_m, u_m⟩).

    Returns
    -------
    MemoryState
        Same mask and keys, new values [B, M, Dv].
    """
    B, M, Dv = state.values.shape
    check_shape("update", update, (B, M, Dv))
    if gate is None:
        z = torch.sigmoid((state.values * update).sum(-1, keepdim=True))       # z_m = σ(⟨v_m, u_m⟩), [B, M, 1]
    elif gate.shape == (B, M):
        z = gate.unsqueeze(-1)                                                  # [B, M, 1]
    elif gate.shape == (B, M, Dv):
        z = gate
    else:
        raise ValueError(f"gate must be [B, M] or [B, M, Dv] = {(B, M)} or {(B, M, Dv)}, "
                         f"got {tuple(gate.shape)}")
    values = (1 - z) * state.values + z * update                                # (1 − z)·v + z·u
    return state.with_values(values)


class _GatedScan(torch.autograd.Function):
    """Every state of v_t = v_{t−1} + z_t·(u_t − v_{t−1}), z_t = a_t·σ(⟨v_{t−1}, u_t⟩) per slot
    (a_t ∈ {0, 1}: the step writes or not), over time-major tensors, with a hand-written backward.

    The gate depends on the memory, so unlike erase-add this is not affine and has no closed
    scan; but one step is four fused ops each way instead of an autograd graph per step:

        ∂L/∂v_{t−1} = g (1 − z) + ⟨g, u − v⟩ z (1 − z) u
        ∂L/∂u_t     = g z       + ⟨g, u − v⟩ z (1 − z) v        (g = ∂L/∂v_t, v = v_{t−1})
    """

    @staticmethod
    def forward(ctx, initial, update, active):                 # [B, M, D], [T, B, M, D], [T, B, 1, 1]
        out = torch.empty_like(update)
        gates = update.new_empty(*update.shape[:-1], 1)
        previous = initial
        for t in range(len(update)):
            z = torch.sigmoid((previous * update[t]).sum(-1, keepdim=True)) * active[t]
            gates[t] = z
            torch.addcmul(previous, z, update[t] - previous, out=out[t])   # v + z·(u − v)
            previous = out[t]
        ctx.save_for_backward(initial, update, gates, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        initial, update, gates, out = ctx.saved_tensors
        grad_update = torch.empty_like(update)
        grad = torch.zeros_like(initial)                       # ∂L/∂v_t through later steps
        for t in range(len(update) - 1, -1, -1):
            grad = grad + grad_out[t]
            previous = out[t - 1] if t > 0 else initial
            z = gates[t]
            slope = z * (1 - z)                                # σ' (0 where the step does not write)
            inner = (grad * (update[t] - previous)).sum(-1, keepdim=True) * slope
            grad_update[t] = grad * z + inner * previous
            grad = grad * (1 - z) + inner * update[t]
        return grad, grad_update, None


def gated_unroll(state: MemoryState, update: torch.Tensor, mask: torch.Tensor) -> UnrolledStates:
    """Every state of a sequence of :func:`gated_write` s (dot-product gate): equals
    ``unroll(gated_write, state, (update,), mask, return_all=True)``, with one fused step per
    event forward and backward (:class:`_GatedScan`) instead of an autograd graph per step.
    A step with ``mask`` False leaves the memory exactly as it was (its gate is 0).

    update [B, T, M, Dv], mask bool [B, T] → :class:`UnrolledStates` values [B, T, M, Dv].
    """
    B, M, Dv = state.values.shape
    if update.dim() != 4 or update.shape[0] != B or update.shape[2:] != (M, Dv):
        raise ValueError(f"update must be [B, T, M, Dv] = [{B}, T, {M}, {Dv}], got {tuple(update.shape)}")
    T = update.shape[1]
    check_shape("mask", mask, (B, T))
    if T == 0:
        values = state.values.unsqueeze(1)[:, :0]
    else:
        time_major = update.transpose(0, 1).contiguous()
        active = mask.transpose(0, 1).to(update.dtype)[:, :, None, None]
        values = _GatedScan.apply(state.values, time_major, active).transpose(0, 1)
    return UnrolledStates(values, repeat_over_time(state.mask, T), repeat_over_time(state.keys, T))


def gated_final(state: MemoryState, update: torch.Tensor, mask: torch.Tensor,
                slot_offset: torch.Tensor | None = None) -> MemoryState:
    """The memory after a padded sequence of :func:`gated_write` s (dot-product gate): equals
    ``unroll(gated_write, state, (update,), mask)``, in one pass over time that touches only the
    rows with an event at each step (:func:`~memrec.memory.unroll.final_values`) and keeps one
    memory, not every state, with the write's own arithmetic (so autograd follows it).

    KSR's update is one vector per event plus one per slot (u_a = e_i + r_a): pass the event
    part as ``update`` [B, T, Dv] and the slot part as ``slot_offset`` [M, Dv], and the
    [B, T, M, Dv] sum is formed one step at a time instead of for the whole batch at once.

    update [B, T, M, Dv] (or [B, T, Dv] with ``slot_offset`` [M, Dv]), mask bool [B, T]
    → MemoryState values [B, M, Dv].
    """
    B, M, Dv = state.values.shape
    T = mask.shape[1]
    check_shape("mask", mask, (B, T))
    if slot_offset is None:
        check_shape("update", update, (B, T, M, Dv))
        step = _gated_step
    else:
        check_shape("update", update, (B, T, Dv))
        check_shape("slot_offset", slot_offset, (M, Dv))
        step = lambda v, u: _gated_step(v, u.unsqueeze(1) + slot_offset)   # noqa: E731
    return state.with_values(final_values(step, state.values, (update,), mask))


def _gated_step(values: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """:func:`gated_write` 's update for n rows: values, update [n, M, Dv] → [n, M, Dv]."""
    z = torch.sigmoid((values * update).sum(-1, keepdim=True))                 # z_m = σ(⟨v_m, u_m⟩)
    return (1 - z) * values + z * update
