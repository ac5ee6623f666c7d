"""Erase-add writes on fixed-slot memories (NTM / DKVMN; RUM-F, NMRN).

    v_m ← v_m ⊙ (1 − w_m·e) + w_m·a

:func:`erase_add_write` applies one write (the serving path). The write is affine in the
memory, so a whole sequence needs no per-step autograd graph: :func:`affine_scan` runs
x_t = x_{t−1} ⊙ m_t + a_t as a log-depth scan (steps composed pairwise) with a hand-written
backward, and :func:`erase_add_unroll` gives every state of a sequence with it (training);
:func:`erase_add_final` gives the final state only, touching just the rows with an event at
each step and keeping one memory (encoding histories for evaluation and serving).

The write never changes ``mask``: these memories have every slot real from the start, so build
their initial state with the mask all True (``MemoryState.empty`` gives mask all False, which
suits the FIFO).
"""

from __future__ import annotations

import torch

from .state import MemoryState
from .unroll import UnrolledStates, check_shape, final_values, repeat_over_time

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
    the rows with a real event there (:func:`~memrec.memory.unroll.final_values`: rows sorted by
    length, each step a slice), so the work follows the number of events, not B × T (a
    full-ranking batch pads every history to the longest one), and the schedule is read from the
    device once, not at every step. Keeps one memory, not every state.

    weights [B, T, M], erase / add [B, T, Dv], mask bool [B, T] → MemoryState.
    """
    B, M, Dv = state.values.shape
    T = mask.shape[1]
    check_shape("weights", weights, (B, T, M))
    check_shape("erase", erase, (B, T, Dv))
    check_shape("add", add, (B, T, Dv))
    return state.with_values(final_values(_erase_add_step, state.values, (weights, erase, add), mask))


def _erase_add_step(values: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor,
                    add: torch.Tensor) -> torch.Tensor:
    """v ⊙ (1 − w·e) + w·a for n rows: values [n, M, Dv], weights [n, M], erase / add [n, Dv]."""
    w = weights.unsqueeze(-1)                                                   # [n, M, 1]
    return values * (1 - w * erase.unsqueeze(1)) + w * add.unsqueeze(1)


#: per-step size (elements) up to which the CPU affine scan runs log-depth; above it one fused
#: op per step wins, because then each step is memory-bound and the log-depth scan moves about
#: three times the data of the loop (the sweep is in benchmarks/results/performance.md)
LOG_DEPTH_MAX_STEP = 8192
#: sequences this short run as a plain loop: a log-depth level costs four ops, a step one
_LOG_DEPTH_MIN_LENGTH = 8


def _log_depth(step_numel: int, device: torch.device) -> bool:
    """Whether the affine scan pays off log-depth: always on accelerators (each op is a kernel
    launch), on the CPU while a step is small enough to be bound by per-op overhead."""
    return device.type != "cpu" or step_numel <= LOG_DEPTH_MAX_STEP


def _scan_forward(out, multiplier, increment, initial, log_depth: bool) -> None:
    """Write into ``out`` [B, T, ...] every x_t = m_t ⊙ x_{t−1} + a_t, x_{−1} = ``initial``.

    Log-depth (recursive doubling, work O(T)): pair the steps (2k, 2k+1) into one affine step
    (m_{2k+1} m_{2k}, m_{2k+1} a_{2k} + a_{2k+1}), whose states are the odd x's; solve that
    half-length recurrence the same way, then each even x_{2k} is one step from x_{2k−1}. No
    division, so multipliers of 0 (erase gates of 1) are safe.
    """
    T = multiplier.shape[1]
    if not log_depth or T <= _LOG_DEPTH_MIN_LENGTH:
        previous = initial
        for t in range(T):
            torch.addcmul(increment[:, t], multiplier[:, t], previous, out=out[:, t])
            previous = out[:, t]
        return
    pairs = 2 * (T // 2)
    odd_m = multiplier[:, 1::2]
    pair_m = odd_m * multiplier[:, 0:pairs:2]
    pair_a = torch.addcmul(increment[:, 1::2], odd_m, increment[:, 0:pairs:2])
    _scan_forward(out[:, 1::2], pair_m, pair_a, initial, log_depth)             # x_1, x_3, …
    torch.addcmul(increment[:, 0], multiplier[:, 0], initial, out=out[:, 0])    # x_0
    torch.addcmul(increment[:, 2::2], multiplier[:, 2::2], out[:, 1:T - 1:2], out=out[:, 2::2])


def _scan_backward(out, multiplier, increment, final, log_depth: bool) -> None:
    """The reverse recurrence: write into ``out`` every y_t = c_t ⊙ y_{t+1} + g_t, y_T = ``final``
    (``multiplier`` is c, ``increment`` g). Same doubling as :func:`_scan_forward`, mirrored:
    an odd-length sequence first takes its last step, then pairs (2k, 2k+1) give the even y's."""
    T = multiplier.shape[1]
    if not log_depth or T <= _LOG_DEPTH_MIN_LENGTH:
        following = final
        for t in range(T - 1, -1, -1):
            torch.addcmul(increment[:, t], multiplier[:, t], following, out=out[:, t])
            following = out[:, t]
        return
    if T % 2:
        torch.addcmul(increment[:, -1], multiplier[:, -1], final, out=out[:, -1])
        _scan_backward(out[:, :-1], multiplier[:, :-1], increment[:, :-1], out[:, -1], log_depth)
        return
    even_c = multiplier[:, 0::2]
    pair_c = even_c * multiplier[:, 1::2]
    pair_g = torch.addcmul(increment[:, 0::2], even_c, increment[:, 1::2])
    _scan_backward(out[:, 0::2], pair_c, pair_g, final, log_depth)             # y_0, y_2, …
    torch.addcmul(increment[:, -1], multiplier[:, -1], final, out=out[:, -1])   # y_{T−1}
    torch.addcmul(increment[:, 1:-1:2], multiplier[:, 1:-1:2], out[:, 2::2], out=out[:, 1:-1:2])


class _AffineScan(torch.autograd.Function):
    """x_t = x_{t−1} ⊙ m_t + a_t over [B, T, ...] tensors, with a hand-written backward: the
    gradient is the reverse affine scan G_t = g_t + m_{t+1} ⊙ G_{t+1}, run the same way."""

    @staticmethod
    def forward(ctx, initial, multiplier, increment):           # [B, ...], [B, T, ...], [B, T, ...]
        out = torch.empty_like(increment, memory_format=torch.contiguous_format)
        log_depth = _log_depth(initial.numel(), initial.device)
        _scan_forward(out, multiplier, increment, initial, log_depth)
        ctx.save_for_backward(initial, multiplier, out)
        ctx.log_depth = log_depth
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        initial, multiplier, out = ctx.saved_tensors
        grad = torch.empty_like(out)                            # dL/dx_t, through all later steps
        grad[:, -1] = grad_out[:, -1]
        _scan_backward(grad[:, :-1], multiplier[:, 1:], grad_out[:, :-1], grad[:, -1], ctx.log_depth)
        grad_multiplier = torch.empty_like(out)                 # G_t ⊙ x_{t−1}
        torch.mul(grad[:, 0], initial, out=grad_multiplier[:, 0])
        torch.mul(grad[:, 1:], out[:, :-1], out=grad_multiplier[:, 1:])
        return grad[:, 0] * multiplier[:, 0], grad_multiplier, grad


def affine_scan(initial: torch.Tensor, multiplier: torch.Tensor, increment: torch.Tensor) -> torch.Tensor:
    """Every state of the affine recurrence x_t = x_{t−1} ⊙ m_t + a_t, x_{−1} = ``initial``.

    Erase-add writes are affine in the memory (m = 1 − w·e, a = w·a), so their unroll needs no
    per-step autograd graph: composing steps pairwise gives every state in O(log T) vectorised
    rounds forward and backward (:func:`_scan_forward`), or one fused op per step where a step
    is large enough that the loop is faster (:data:`LOG_DEPTH_MAX_STEP`, CPU only).

    initial [B, ...], multiplier / increment [B, T, ...] (same shape) → states [B, T, ...].
    """
    if multiplier.shape != increment.shape or multiplier.shape[:1] + multiplier.shape[2:] != initial.shape:
        raise ValueError(f"multiplier and increment must be [B, T, ...] with initial [B, ...]; got "
                         f"{tuple(multiplier.shape)}, {tuple(increment.shape)}, {tuple(initial.shape)}")
    if multiplier.shape[1] == 0:
        return increment.clone()
    return _AffineScan.apply(initial, multiplier, increment)


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
