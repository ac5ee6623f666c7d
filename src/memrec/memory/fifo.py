"""FIFO memory: a fixed-capacity queue of the last M items, oldest evicted (RUM-I, STAMP).

One write and its fast whole-sequence forms:

* :func:`fifo_append` pushes one item per row (the serving path, and the write
  :func:`~memrec.memory.unroll.unroll` applies step by step);
* :func:`fifo_window` is the memory after a whole padded sequence (encoding histories for
  evaluation and serving), and :func:`fifo_positions` / :func:`fifo_states` every state of one
  (training, where each prefix predicts its next item): gathers, no loop over time.

FIFO layout (one convention everywhere): slots are ordered oldest → newest and the newest item
is always in the **last** slot (index M − 1). Older items shift one slot left on each push; a
memory holding n < M items has its M − n *leading* slots empty (mask False), so a right-aligned
mask ``[F, F, T, T]`` means "two items, the older in slot 2". This is the layout of a
left-padded history window, which is what RUM-I reads.
"""

from __future__ import annotations

import torch

from .state import MemoryState
from .unroll import UnrolledStates, check_shape, select_rows

__all__ = ["fifo_append", "fifo_window", "fifo_positions", "fifo_states"]


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
    check_shape("item_values", item_values, (B, Dv))
    if (state.keys is None) != (item_keys is None):
        raise ValueError("item_keys must be given exactly when the state has keys "
                         f"(state.keys is {'None' if state.keys is None else 'set'})")
    filled = torch.ones(B, 1, dtype=torch.bool, device=state.mask.device)
    values = torch.cat([state.values[:, 1:], item_values.unsqueeze(1)], dim=1)  # [v_1..v_{M-1}, x]
    mask = torch.cat([state.mask[:, 1:], filled], dim=1)                        # [m_1..m_{M-1}, 1]
    keys = None
    if state.keys is not None:
        check_shape("item_keys", item_keys, (B, state.keys.shape[2]))
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
