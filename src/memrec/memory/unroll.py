"""Unrolling a memory write over a padded ``[B, T]`` sequence, and what the writes share.

Every write in :mod:`memrec.memory` is a pure function ``MemoryState -> MemoryState``, so the
same function serves two paths that must agree (DESIGN.md, "streaming == batch"): training
unrolls it over a padded sequence with :func:`unroll` here, serving calls it once per arriving
event on a stored state. :func:`unroll` works for any write and any padding; the per-write
modules (:mod:`~memrec.memory.fifo`, :mod:`~memrec.memory.erase_add`,
:mod:`~memrec.memory.gated`) add fast equivalents that are tested against it.

This module is the bottom of the write modules: they import :class:`UnrolledStates`,
:func:`select_rows`, :func:`final_values` (the final-state loop of the fixed-slot writes) and the
shape helpers from here, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from .state import MemoryState

__all__ = ["select_rows", "UnrolledStates", "unroll", "final_values", "check_shape", "repeat_over_time"]


def select_rows(condition: torch.Tensor, new: MemoryState, old: MemoryState) -> MemoryState:
    """Per-row choice between two states of the same shape: row b is ``new``'s where
    ``condition[b]`` is True, else ``old``'s (values, mask and keys alike).

    Parameters
    ----------
    condition : bool [B]
    new, old : MemoryState with equal shapes (and keys on both or on neither).
    """
    B = old.values.shape[0]
    check_shape("condition", condition, (B,))
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


def final_values(step: Callable[..., torch.Tensor], values: torch.Tensor,
                 events: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The memory after a padded sequence of writes, each row taking only its own events:
    ``v ← step(v, *event_t)`` at every step where ``mask`` is True, nothing elsewhere.

    Rows are sorted by their number of events and each row's events are moved to its front, so
    the rows still writing at step k are always a prefix of the sorted batch: every step is a
    slice (no per-step ``nonzero``, so no host sync per step: the schedule is read once), the
    work follows the number of events rather than B × T (a full-ranking batch pads every history
    to the longest), and only one memory is kept. A row's writes run in the same order with the
    same arithmetic as a per-row loop, so the result is identical to it, gradients included.

    Parameters
    ----------
    step : callable(v [n, ...], *events [n, ...]) -> [n, ...]
        One write applied to n rows at once (out of place, so autograd can follow it).
    values : [B, ...]
        The initial memory.
    events : tuple of [B, T, ...]
    mask : bool [B, T]
    """
    B, T = mask.shape
    mask = mask.to(torch.bool)
    lengths = mask.sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)               # longest rows first
    times = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[order]  # event steps first
    source = (order[:, None] * T + times).T.contiguous()     # [T, B]: flat [B·T] index of k-th events
    flat = [x.reshape(B * T, *x.shape[2:]) for x in events]  # one index_select a step, not x[rows, t]
    writing = (B - torch.cumsum(torch.bincount(lengths, minlength=T + 1), 0)).tolist()  # rows with > k events
    current, finished = values[order], []
    for k, n in enumerate(writing):
        if n < len(current):                                                    # rows out of events
            finished.append(current[n:])
            current = current[:n]
        if n == 0:
            break
        current = step(current, *(x.index_select(0, source[k, :n]) for x in flat))
    finished.append(current)
    return torch.cat(finished[::-1]).index_select(0, torch.argsort(order))   # back to batch order


# --------------------------------------------------------------------------------------------
# shape helpers shared by the write modules
# --------------------------------------------------------------------------------------------

def check_shape(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``x.shape == shape``."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def repeat_over_time(x: torch.Tensor | None, T: int) -> torch.Tensor | None:
    """A per-state field that no step changes, as every state of an unroll: [B, ...] →
    [B, T, ...] (an expanded view, no copy); None stays None (a state without keys)."""
    return None if x is None else x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:])
