"""Time-gated writes: idle decay towards a resting value, then a gated convex update (DEMN, L3).

One event x at elapsed time Δ since the row's previous event (spec ``demn.md`` B.3):

    w_s  = softmax_s(β · cos(k_s + m_s, x))                 address (key plus content, MIMN)
    γ_s  = exp(−Δ / τ_s)                                      idle decay, τ_s > 0 per slot
    m′_s = γ_s · m_s + (1 − γ_s) · r_s                        fade towards the resting value r_s
    c_s  = candidate(m′)_s                                    what the slot would become
    z_s  = w_s · gate(m′)_s,   gate ∈ [0, 1]                  attention-scaled update gate (AUGRU)
    m_s  ← (1 − z_s) · m′_s + z_s · c_s                       convex interpolation

Why a new write rather than erase-add: the slot fades by *elapsed time* (not by event count),
slots with a long τ_s keep long-term taste while short ones track drift (HPMN's multi-scale
memory without fixed periods), and every step is a convex combination of m, r and c, so the
memory stays inside their hull (bounded whenever r and c are — c is a tanh in DEMN).

The learned parts (the candidate and gate networks) are passed in as callables of the decayed
memory, so the primitive stays a pure function that hand-computed tests can check; the keys k_s
live in ``state.keys``. :func:`time_gated_unroll` applies the write over a padded [B, T]
sequence with :func:`~memrec.memory.unroll.unroll` (a batched loop over time steps: the gate
depends on the memory, so there is no closed-form scan). ``mask`` is never changed.
"""

from __future__ import annotations

from typing import Callable

import torch

from .state import MemoryState
from .unroll import UnrolledStates, check_shape, unroll

__all__ = ["idle_decay", "time_gated_address", "time_gated_write", "time_gated_unroll"]

#: candidate(decayed [B, S, D]) → [B, S, D]; gate(decayed [B, S, D]) → [B, S] in [0, 1]
SlotFn = Callable[[torch.Tensor], torch.Tensor]


def idle_decay(values: torch.Tensor, rest: torch.Tensor, timescale: torch.Tensor,
               elapsed: torch.Tensor) -> torch.Tensor:
    """m′ = γ m + (1 − γ) r with γ_s = exp(−Δ/τ_s).

    values, rest [B, S, D]; timescale [S] or [B, S] (positive); elapsed [B] (≥ 0) → [B, S, D].
    Δ = 0 gives γ = 1, the identity; Δ → ∞ gives the resting value.
    """
    gamma = torch.exp(-elapsed[:, None] / timescale).unsqueeze(-1)             # [B, S, 1]
    return gamma * values + (1 - gamma) * rest


def time_gated_address(state: MemoryState, x: torch.Tensor, beta: float | torch.Tensor = 1.0
                       ) -> torch.Tensor:
    """w_s = softmax_s(β · cos(k_s + m_s, x)): state [B, S, D] (keys [B, S, D] or None: the
    content alone), x [B, D] → [B, S]."""
    address = state.values if state.keys is None else state.keys + state.values
    cosine = torch.nn.functional.cosine_similarity(address, x[:, None, :], dim=-1, eps=1e-8)
    return torch.softmax(beta * cosine, dim=-1)


def time_gated_write(state: MemoryState, x: torch.Tensor, rest: torch.Tensor,
                     timescale: torch.Tensor, elapsed: torch.Tensor, candidate: SlotFn,
                     gate: SlotFn, beta: float | torch.Tensor = 1.0) -> MemoryState:
    """One time-gated write per row (the B.3 table; the serving path).

    Parameters
    ----------
    state : MemoryState
        values [B, S, D]; keys [B, S, D] (the slots' learned keys k_s) or None.
    x : [B, D]
        The event's input (DEMN: the consumed item's memory-enriched embedding).
    rest : [B, S, D]
        The resting value r_s a slot fades to when idle (DEMN: k_s + p_u).
    timescale : [S] or [B, S]
        τ_s > 0 (DEMN: softplus of a learned θ_s).
    elapsed : [B]
        Δ ≥ 0 since the row's previous event (seconds, or 1 step where there is no clock).
    candidate, gate : callables of the decayed memory m′ [B, S, D]
        → candidate values c [B, S, D] and the gate σ(·) [B, S] in [0, 1].
    beta : address sharpness β.

    Returns
    -------
    MemoryState with new values [B, S, D]; mask and keys unchanged.
    """
    B, S, D = state.values.shape
    check_shape("x", x, (B, D))
    check_shape("rest", rest, (B, S, D))
    check_shape("elapsed", elapsed, (B,))
    w = time_gated_address(state, x, beta)                                     # address, [B, S]
    decayed = idle_decay(state.values, rest, timescale, elapsed)              # m′
    c = candidate(decayed)                                                     # c_s
    z = (w * gate(decayed)).unsqueeze(-1)                                      # z_s = w_s σ(·)
    return state.with_values((1 - z) * decayed + z * c)                        # convex interpolation


def time_gated_unroll(state: MemoryState, x: torch.Tensor, rest: torch.Tensor,
                      timescale: torch.Tensor, elapsed: torch.Tensor, mask: torch.Tensor,
                      candidate: Callable[[torch.Tensor, int], torch.Tensor],
                      gate: Callable[[torch.Tensor, int], torch.Tensor],
                      beta: float | torch.Tensor = 1.0, *, return_all: bool = True
                      ) -> MemoryState | UnrolledStates:
    """:func:`time_gated_write` over a padded sequence: x [B, T, D], elapsed [B, T], mask bool
    [B, T]; ``candidate(decayed, t)`` / ``gate(decayed, t)`` see the step index, so per-step
    context (neighbours, Δ's embedding) can enter them. Padded steps leave a row unchanged.
    Returns every state (index t: after event t) or, with ``return_all=False``, the last."""
    steps = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)

    def step(s: MemoryState, x_t, elapsed_t, t):
        t = int(t[0])                                                          # same t in every row
        return time_gated_write(s, x_t, rest, timescale, elapsed_t, lambda m: candidate(m, t),
                                lambda m: gate(m, t), beta)
    return unroll(step, state, (x, elapsed, steps), mask, return_all=return_all)
