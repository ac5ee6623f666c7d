"""Memory writes: pure functions ``MemoryState -> MemoryState``, batched and autograd-friendly.

Every write returns a new state and never mutates its inputs, so the same function serves two
paths that must agree (DESIGN.md, "streaming == batch"):

* training unrolls a write over a padded ``[B, T]`` sequence with :func:`unroll`;
* serving calls the write once per arriving event on a stored state.

The primitives and the models built from them (spec ``rum-ksr-stamp-nmrn.md``):

==========================  =====================================================  ============
write                       update                                                 used by
==========================  =====================================================  ============
:func:`fifo_append`         queue of the last M items, oldest evicted              RUM-I, STAMP
:func:`erase_add_write`     v_m ← v_m ⊙ (1 − w_m·e) + w_m·a   (NTM / DKVMN)        RUM-F, NMRN
:func:`gated_write`         v_m ← (1 − z_m)·v_m + z_m·u_m,  z_m = σ(⟨v_m, u_m⟩)    KSR
==========================  =====================================================  ============

Every state of a whole sequence at once (training, where each prefix predicts its next item):
:func:`fifo_positions` / :func:`fifo_states` (the FIFO is a gather, no loop) and
:func:`erase_add_unroll` (erase-add is affine in the memory, so :func:`affine_scan` runs it with
one fused op per step and a hand-written backward). The final state only (encoding histories for
evaluation and serving): :func:`fifo_window` and :func:`erase_add_final`.

The parameters that produce the write's inputs (RUM-F's ``E, A``, KSR's relation embeddings, the
addressing softmax) belong to the models; these functions only apply the update equations.

FIFO layout (one convention everywhere): slots are ordered oldest → newest and the newest item
is always in the **last** slot (index M − 1). Older items shift one slot left on each push; a
memory holding n < M items has its M − n *leading* slots empty (mask False), so a right-aligned
mask ``[F, F, T, T]`` means "two items, the older in slot 2". This is the layout of a
left-padded history window, which is what RUM-I reads.

Masks of fixed-slot memories (RUM-F, KSR, NMRN): :func:`erase_add_write` and :func:`gated_write`
never change ``mask``. Those memories have every slot real from the start, so build their initial
state with the mask all True (``MemoryState.empty`` gives mask all False, which suits the FIFO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from .state import MemoryState

__all__ = [
    "fifo_append", "fifo_window", "fifo_positions", "fifo_states", "erase_add_write", "gated_write",
    "gated_unroll",
    "affine_scan", "erase_add_unroll", "erase_add_final",
    "select_rows", "unroll", "UnrolledStates",
]


# --------------------------------------------------------------------------------------------
# FIFO
# --------------------------------------------------------------------------------------------

def fifo_append(state: MemoryState, item_values: torch.Tensor, item_keys: torch.Tensor | None = None,
                *, active: torch.Tensor | None = None) -> MemoryState:
    """Push one item per row into a fixed-capacity queue (capacity M), evicting the oldest.

    Slot order is oldest → newest, the newest item lands in slot M − 1 and the others shift one
    slot left; the item in slot 0 is evicted (whether or not it was filled). After pushing a, b, c
    into an empty M = 2 memory the slots hold [b, c]; after pushing only a they hold [∅, a] with
    mask [False, True].

    Parameters
    ----------
    state : MemoryState
        The memory before the push.
    item_values : [B, Dv]
        The value of the pushed item (RUM-I: the item embedding q_{i_t}).
    item_keys : [B, Dk], optional
        Its key; required exactly when ``state.keys`` is not None.
    active : bool [B], optional
        Rows with False are returned unchanged (no push, no eviction). Default: all rows push.

    Returns
    -------
    MemoryState
        values [B, M, Dv], mask [B, M], keys [B, M, Dk] | None.
    """
    B, M, Dv = state.values.shape
    _check_shape("item_values", item_values, (B, Dv))
    if (state.keys is None) != (item_keys is None):
        raise ValueError("item_keys must be given exactly when the state has keys "
                         f"(state.keys is {'None' if state.keys is None else 'set'})")
    filled = torch.ones(B, 1, dtype=torch.bool, device=state.mask.device)
    values = torch.cat([state.values[:, 1:], item_values.unsqueeze(1)], dim=1)  # [v_1..v_{M-1}, x]
    mask = torch.cat([state.mask[:, 1:], filled], dim=1)                        # [m_1..m_{M-1}, 1]
    keys = None
    if state.keys is not None:
        _check_shape("item_keys", item_keys, (B, state.keys.shape[2]))
        keys = torch.cat([state.keys[:, 1:], item_keys.unsqueeze(1)], dim=1)    # [k_1..k_{M-1}, x_k]
    new = MemoryState(values, mask, keys)
    return new if active is None else select_rows(active, new, state)


def fifo_window(values: torch.Tensor, mask: torch.Tensor, capacity: int,
                keys: torch.Tensor | None = None) -> MemoryState:
    """The FIFO memory after pushing a whole padded sequence, without a loop over time.

    Equals ``unroll(fifo_append, MemoryState.empty(B, capacity, Dv), (values,), mask)`` (and with
    keys likewise): the last ``capacity`` valid items of each row, oldest → newest, right-aligned
    in the slots (see the module docstring). Works for any padding: left, right or holes.
    This is RUM-I's "sliding window" write (spec §1.3, §1.9) in one gather.

    Parameters
    ----------
    values : [B, T, Dv]
    mask : bool [B, T]
        True where the position holds a real item.
    capacity : int
        M, the number of slots.
    keys : [B, T, Dk], optional

    Returns
    -------
    MemoryState
        values [B, M, Dv] (zeros in empty slots), mask [B, M], keys [B, M, Dk] | None.
    """
    if values.dim() != 3 or mask.shape != values.shape[:2]:
        raise ValueError(f"values must be [B, T, D] and mask [B, T], got {tuple(values.shape)} "
                         f"and {tuple(mask.shape)}")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    mask = mask.to(torch.bool)
    B, T, _ = values.shape
    # r_t = number of valid items at positions ≥ t: 1 for the newest valid item, 2 for the one before
    newer = mask.flip(1).long().cumsum(1).flip(1)                               # [B, T]
    keep = mask & (newer <= capacity)                                           # the last M valid items
    slot = torch.where(keep, capacity - newer, torch.full_like(newer, capacity))  # newest → slot M-1; dropped → spill slot M

    def place(x: torch.Tensor) -> torch.Tensor:                                 # [B, T, D] → [B, M, D]
        out = x.new_zeros(B, capacity + 1, x.shape[2])
        out = out.scatter(1, slot.unsqueeze(-1).expand(-1, -1, x.shape[2]), x)  # out[b, slot[b,t]] = x[b, t]
        return out[:, :capacity]                                                # drop the spill slot

    slot_mask = mask.new_zeros(B, capacity + 1).scatter(1, slot, keep)[:, :capacity]
    return MemoryState(place(values), slot_mask, None if keys is None else place(keys))


def fifo_positions(mask: torch.Tensor, capacity: int, *, only_last: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every FIFO state of a sequence takes its items from, without a loop over time.

    Slot m of the state after event t holds the sequence position ``positions[b, t, m]`` when
    ``slot_mask[b, t, m]``: the last ``capacity`` valid positions ≤ t, oldest → newest,
    right-aligned (the layout of :func:`fifo_append`). Gather ids or embeddings with it; this is
    RUM-I's memory at every prefix for next-item training in one pass.

    mask bool [B, T] (any padding) → (positions long [B, T, M], slot_mask bool [B, T, M]);
    empty slots point at position 0. ``only_last``: just the final state's, [B, 1, M].
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    mask = mask.to(torch.bool)
    B, T = mask.shape
    count = mask.long().cumsum(1)                                               # valid items ≤ t
    if only_last:
        count, T = count[:, -1:], 1
    # valid positions in order, then the rest: rank r (0-based) of a valid item → its position
    by_rank = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices    # [B, T]
    slot = torch.arange(capacity, device=mask.device)
    rank = count[:, :, None] - capacity + slot                                  # slot M-1 ↦ newest (rank count-1)
    slot_mask = rank >= 0
    positions = by_rank.gather(1, rank.clamp_min(0).reshape(B, -1)).reshape(B, T, capacity)
    return positions.masked_fill(~slot_mask, 0), slot_mask


def fifo_states(values: torch.Tensor, mask: torch.Tensor, capacity: int) -> "UnrolledStates":
    """Every FIFO state of a padded sequence at once: equals
    ``unroll(fifo_append, MemoryState.empty(B, capacity, Dv), (values,), mask, return_all=True)``.

    values [B, T, Dv], mask bool [B, T] → :class:`UnrolledStates` with values [B, T, M, Dv]
    (zeros in empty slots) and mask [B, T, M].
    """
    if values.dim() != 3 or mask.shape != values.shape[:2]:
        raise ValueError(f"values must be [B, T, D] and mask [B, T], got {tuple(values.shape)} "
                         f"and {tuple(mask.shape)}")
    positions, slot_mask = fifo_positions(mask, capacity)
    B, T, M = positions.shape
    gathered = values.gather(1, positions.reshape(B, T * M, 1).expand(-1, -1, values.shape[2]))
    gathered = gathered.reshape(B, T, M, -1) * slot_mask[..., None]
    # a padded step leaves the state as it was: its slots equal the previous step's already,
    # because count (and so every rank) does not move on a padded step
    return UnrolledStates(gathered, slot_mask)


# --------------------------------------------------------------------------------------------
# Soft writes on fixed-slot memories
# --------------------------------------------------------------------------------------------

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
    _check_shape("weights", weights, (B, M))
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
    _check_shape("weights", weights, (B, T, M))
    _check_shape("erase", erase, (B, T, Dv))
    _check_shape("add", add, (B, T, Dv))
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
    _check_shape("weights", weights, (B, T, M))
    _check_shape("erase", erase, (B, T, Dv))
    _check_shape("add", add, (B, T, Dv))
    w = (weights * mask[..., None]).unsqueeze(-1)                               # [B, T, M, 1]
    values = affine_scan(state.values, 1 - w * erase.unsqueeze(2), w * add.unsqueeze(2))
    expand = lambda x: None if x is None else x.unsqueeze(1).expand(B, T, *x.shape[1:])  # noqa: E731
    return UnrolledStates(values, expand(state.mask), expand(state.keys))


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
    _check_shape("update", update, (B, M, Dv))
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
    _check_shape("mask", mask, (B, T))
    if T == 0:
        values = state.values.unsqueeze(1)[:, :0]
    else:
        time_major = update.transpose(0, 1).contiguous()
        active = mask.transpose(0, 1).to(update.dtype)[:, :, None, None]
        values = _GatedScan.apply(state.values, time_major, active).transpose(0, 1)
    expand = lambda x: None if x is None else x.unsqueeze(1).expand(B, T, *x.shape[1:])  # noqa: E731
    return UnrolledStates(values, expand(state.mask), expand(state.keys))


# --------------------------------------------------------------------------------------------
# Unrolling a write over a padded sequence
# --------------------------------------------------------------------------------------------

def select_rows(condition: torch.Tensor, new: MemoryState, old: MemoryState) -> MemoryState:
    """Per-row choice between two states of the same shape: row b is ``new``'s where
    ``condition[b]`` is True, else ``old``'s (values, mask and keys alike).

    Parameters
    ----------
    condition : bool [B]
    new, old : MemoryState with equal shapes (and keys on both or on neither).
    """
    B = old.values.shape[0]
    _check_shape("condition", condition, (B,))
    if new.values.shape != old.values.shape or (new.keys is None) != (old.keys is None):
        raise ValueError("a write must keep the state's shapes (and keep keys present or absent)")
    c = condition.to(torch.bool)
    values = torch.where(c[:, None, None], new.values, old.values)
    mask = torch.where(c[:, None], new.mask, old.mask)
    keys = None if old.keys is None else torch.where(c[:, None, None], new.keys, old.keys)
    return MemoryState(values, mask, keys)


@dataclass(frozen=True)
class UnrolledStates:
    """Every state of an unroll, stacked over time: index t is the state *after* event t.

    Shapes
    ------
    values : [B, T, M, Dv]
    mask : bool [B, T, M]
    keys : [B, T, M, Dk], optional
    """

    values: torch.Tensor
    mask: torch.Tensor
    keys: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.values.shape[1]

    def at(self, t: int) -> MemoryState:
        """The state after event t (what a read at step t sees when the model writes first)."""
        return MemoryState(self.values[:, t], self.mask[:, t], None if self.keys is None else self.keys[:, t])

    @property
    def final(self) -> MemoryState:
        return self.at(-1)

    def before(self, initial: MemoryState) -> "UnrolledStates":
        """The states *before* each event: index 0 is ``initial``, index t the state after event
        t − 1. Use it when a model predicts item t from the memory without item t (RUM-F)."""
        def shift(stacked: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
            return torch.cat([first.unsqueeze(1), stacked[:, :-1]], dim=1)
        keys = None if self.keys is None else shift(self.keys, initial.keys)
        return UnrolledStates(shift(self.values, initial.values), shift(self.mask, initial.mask), keys)


Events = Mapping[str, torch.Tensor] | Sequence[torch.Tensor]


def unroll(write_fn: Callable[..., MemoryState], state: MemoryState, events: Events,
           mask: torch.Tensor, *, return_all: bool = False) -> MemoryState | UnrolledStates:
    """Apply ``write_fn`` over a padded sequence of events, leaving padded steps without effect.

    At each step t, ``new = write_fn(state, *events[:, t])`` (or ``**events[:, t]`` for a dict)
    is computed for the whole batch and kept only in rows where ``mask[:, t]`` is True:
    ``state_t = where(mask[:, t], new, state_{t-1})``. So any write works, padding may sit
    anywhere (left, right, holes), and the result equals calling the write once per real event
    in a Python loop (the serving path). Forward values at masked steps may hold anything, even
    NaN; keep them finite if you back-propagate (a NaN times the zero gradient is still NaN).

    Parameters
    ----------
    write_fn : callable(state, *event_t) -> MemoryState
        E.g. ``fifo_append``, ``erase_add_write``, ``gated_write``, or a model's step; bind extra
        arguments with ``functools.partial`` or a lambda.
    state : MemoryState
        The initial memory: values [B, M, Dv].
    events : dict of name → [B, T, ...], or a tuple of [B, T, ...]
        Sliced at ``[:, t]`` and passed by keyword (dict) or position (tuple) after the state.
    mask : bool [B, T]
        True where step t of row b is a real event.
    return_all : bool
        Return every state (:class:`UnrolledStates`, index t = after event t) instead of the last.

    Returns
    -------
    MemoryState, or UnrolledStates with values [B, T, M, Dv] and mask [B, T, M].
    """
    B = state.values.shape[0]
    if mask.dim() != 2 or mask.shape[0] != B:
        raise ValueError(f"mask must be [B, T] with B = {B}, got {tuple(mask.shape)}")
    T = mask.shape[1]
    named = isinstance(events, Mapping)
    tensors = list(events.values()) if named else list(events)
    for x in tensors:
        if x.shape[:2] != (B, T):
            raise ValueError(f"every event tensor must start with [B, T] = {(B, T)}, got {tuple(x.shape)}")
    mask = mask.to(torch.bool)
    history: list[MemoryState] = []
    for t in range(T):
        if named:
            new = write_fn(state, **{k: x[:, t] for k, x in events.items()})  # write event t
        else:
            new = write_fn(state, *(x[:, t] for x in tensors))
        state = select_rows(mask[:, t], new, state)                             # s_t = m_t ? new : s_{t-1}
        if return_all:
            history.append(state)
    if not return_all:
        return state
    def stack(field: str) -> torch.Tensor:                                      # [B, T, M, ...]
        if not history:                                                         # T == 0: empty time axis
            return getattr(state, field).unsqueeze(1)[:, :0]
        return torch.stack([getattr(s, field) for s in history], dim=1)
    return UnrolledStates(stack("values"), stack("mask"), None if state.keys is None else stack("keys"))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _check_shape(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def _per_slot(name: str, x: torch.Tensor, B: int, M: int, D: int) -> torch.Tensor:
    """[B, D] → [B, 1, D] (broadcast over slots); [B, M, D] passes through."""
    if tuple(x.shape) == (B, D):
        return x.unsqueeze(1)
    if tuple(x.shape) == (B, M, D):
        return x
    raise ValueError(f"{name} must be [B, Dv] = {(B, D)} or [B, M, Dv] = {(B, M, D)}, got {tuple(x.shape)}")
