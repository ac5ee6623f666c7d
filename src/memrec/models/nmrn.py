"""NMRN: neural memory streaming recommender network (trained with adversarial negatives).

Wang, Yin, Hu, Lian, Wang, Huang. "Neural Memory Streaming Recommender Networks with
Adversarial Training." KDD 2018, pp. 2467–2475. No official code exists and the full text could
not be read here: the model below is the reconstruction of the spec ``rum-ksr-stamp-nmrn.md`` §4
(confirmed: a key memory and a value memory addressed by the user, Euclidean similarity, a hinge
loss, a GAN negative sampler, online updates on a time-ordered stream; everything else is ours).
Equation numbers refer to the spec's §4.2 list, not to the paper.

Events (u, v) arrive in time order. With user embedding u, item embedding v, global keys
K = [k_1..k_H] and a value memory M = [m_1..m_H]:

* address  w_h = softmax_h(−‖u − k_h‖)                          (eq. 1) ``memory.read.similarity_scores``
* read     r = Σ_h w_h m_h                                       (eq. 2)
* user     s = u + r  (``merge="sum"``) or s = r (``"read"``)     (eq. 3)
* score    d(s, v) = ‖s − v‖² = ‖s‖² − 2 s·v + ‖v‖²; lower is better, so the model returns −d
           (full ranking is one matmul)                           (eq. 4)
* write    e = σ(E v + b_e), a = tanh(A v + b_a),
           m_h ← m_h ⊙ (1 − w_h e) + w_h a   after each observed event
                                                                  (eq. 5) ``memory.write.erase_add_write``
* loss     max(0, γ + d(s, v⁺) − d(s, v⁻)) = ``losses.hinge(−d⁺, −d⁻, margin=γ)``  (eq. 6)

The value memory is per user (``scope="per_user"``: [n_users, H, d], written by the user's own
events) or one memory for everyone (``"global"``, the default: [1, H, d], written by every event;
the toy re-implementation's choice, and the better one on an ML-100K probe). It is a buffer,
not a parameter: it is *state*, written as the stream goes by, saved with the model.

Training on the stream (it declares :class:`~memrec.models.capabilities.StreamLearner`; :class:`memrec.training.stream.StreamTask`) goes
through the events in time order in micro-batches. :meth:`stream_step` scores each event's
candidates from the memory as it stood **before** the micro-batch (the memory is frozen during
a micro-batch), then writes the micro-batch's events into it in order. With micro-batches of one
event that is the exact event-by-event model; :meth:`stream_step_exact` is that reference path,
written with the per-event primitives (the tests check the two agree).

Gradients into the write (E, A, the keys through the address): the memory the loss reads is
recomputed with graph from the memory before the *previous* micro-batch and that batch's events
(truncated back-propagation through one micro-batch); without it a read of a memory frozen during
the batch would never depend on E and A.

Deviations from the paper (all reconstructions; see ``docs/models/nmrn.md``)
------------------------------------------------------------------------------
* squared Euclidean distance as the score (the ranking is that of the distance; the squared form
  gives full ranking as one matrix product and a smooth hinge);
* s = u + r (long-term embedding plus the memory read: "long-term and short-term interests");
  the notebook's s = r is ``merge="read"``;
* zero initial value memory; the truncated gradient through one micro-batch;
* no WARP-style rank weight on the hinge (UNCERTAIN in the spec; left out).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..memory.read import attention_read, similarity_scores
from ..memory.state import MemoryState, TensorState
from ..memory.write import erase_add_final, erase_add_unroll, erase_add_write
from .base import Query
from .capabilities import MemoryEntry, StateExplainer, StreamLearner, ranked_entries

SCOPES = ("per_user", "global")
MERGES = ("sum", "read")


@dataclass(frozen=True)
class UserMemory(TensorState):
    """NMRN's state for serving: whose it is, users long [B], and the value memory each user
    reads, values [B, H, d] (the user's own row with ``scope="per_user"``; a copy of the one
    shared memory with ``"global"``, which a server keeps as one shared state)."""

    users: torch.Tensor
    values: torch.Tensor
    memory_field = "values"


@dataclass(frozen=True)
class _PendingWrite:
    """The last micro-batch's write, kept so that the next loss back-propagates into it
    (truncated BPTT through one micro-batch): the memory rows it wrote, those rows before it
    start [R, H, d], each event's row slot [b], its users and items; ``exact``: written one
    event at a time by :meth:`NMRN.stream_step_exact` (re-applied with the per-event write)."""

    rows: torch.Tensor
    start: torch.Tensor
    slot: torch.Tensor
    users: torch.Tensor
    items: torch.Tensor
    exact: bool = False


class NMRN(StateExplainer, StreamLearner):
    """Key-value memory streaming recommender with Euclidean scores.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        d, the size of user and item embeddings, keys and memory values.
    slots : int
        H, the number of key/value memory slots.
    scope : "per_user" | "global"
        Whose events write a value memory: the user's own, or everyone's (one shared memory,
        the default).
    merge : "sum" | "read"
        The user vector: u + read, or the read alone.
    init_std : float
        Normal init of embeddings and keys.

    Shapes
    ------
    state: :class:`UserMemory` (users [B], values [B, H, d]); memory buffer: [n_users or 1, H, d]; ``stream_step``: users, items [b], candidates [b, C] → [b, C]
    """

    state_type = UserMemory
    explains = "slot"
    #: floats of the [R, L, H, d] stack of states up to which writes use the affine scan
    SCAN_BUDGET = 1 << 22

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, slots: int = 20,
                 scope: str = "global", merge: str = "sum", init_std: float = 0.1):
        super().__init__(n_users, n_items)
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {', '.join(MERGES)}, not {merge!r}")
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.scope, self.merge = scope, merge
        self.shares_state = scope == "global"
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        self.keys = nn.Parameter(torch.randn(slots, dim) * init_std)              # K
        self.erase = nn.Linear(dim, dim)                                           # E, b_e
        self.add = nn.Linear(dim, dim)                                             # A, b_a
        self.register_buffer("memory", torch.zeros(n_users if scope == "per_user" else 1, slots, dim))
        self._pending: _PendingWrite | None = None     # see stream_step

    # -- the pieces -----------------------------------------------------------------------------
    def rows(self, users: torch.Tensor) -> torch.Tensor:
        """The value-memory row each user reads and writes."""
        return users if self.scope == "per_user" else torch.zeros_like(users)

    def address(self, users: torch.Tensor) -> torch.Tensor:
        """w = softmax_h(−‖u − k_h‖). users [B] → [B, H]."""
        u = self.user_embedding(users)
        keys = self.keys.expand(len(users), *self.keys.shape)
        return torch.softmax(similarity_scores(u, keys, "euclidean"), dim=-1)     # eq. (1)

    def user_vectors(self, users: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """s from each user's memory rows memory [B, H, d] → [B, d]."""
        u = self.user_embedding(users)
        state = MemoryState(memory, torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device),
                            keys=self.keys.expand(len(users), *self.keys.shape))
        read, _ = attention_read(u, state, similarity="euclidean")                 # eqs. (1)-(2)
        return u + read if self.merge == "sum" else read                           # eq. (3)

    def _write_inputs(self, users: torch.Tensor, items: torch.Tensor):
        v = self.item_embedding(items)
        return self.address(users), torch.sigmoid(self.erase(v)), torch.tanh(self.add(v))  # eq. (5)

    @staticmethod
    def distances(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """‖s − v‖² for s [B, d] against every row of v [n, d] → [B, n]: one matmul."""
        return (s * s).sum(1, keepdim=True) - 2 * s @ v.T + (v * v).sum(1)[None, :]   # eq. (4)

    # -- the state (serving) --------------------------------------------------------------------
    def init_state(self, users: torch.Tensor) -> UserMemory:
        """The memory each user reads now (after training and any observed stream)."""
        return UserMemory(users, self.memory[self.rows(users)])

    def shared_view(self, state: UserMemory, users: torch.Tensor) -> UserMemory:
        """The global memory (``scope="global"``) as the state of ``users``."""
        return UserMemory(users, state.values[:1].expand(len(users), -1, -1))

    def update(self, state: UserMemory, items: torch.Tensor) -> UserMemory:
        """Eq. (5): the event (user, item) of each row written into its memory copy."""
        memory = MemoryState(state.values, torch.ones(state.values.shape[:2], dtype=torch.bool,
                                                      device=state.values.device))
        return UserMemory(state.users, erase_add_write(memory, *self._write_inputs(state.users, items)).values)

    def score_state(self, state: UserMemory, users: torch.Tensor, items=None) -> torch.Tensor:
        s = self.user_vectors(users, state.values)
        if items is None:
            return -self.distances(s, self.item_embedding.weight)
        return -(s[:, None, :] - self.item_embedding(items)).pow(2).sum(-1)

    @torch.no_grad()
    def explain_state(self, state: UserMemory, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """The memory slots the user's read attended to (eq. (1): the address depends on the
        user alone, so every item gets the same entries)."""
        w = self.address(users[:1])[0]
        ranked = ranked_entries("slot", torch.arange(len(w), device=w.device), w)
        return [ranked for _ in range(len(items))]

    # -- writes ---------------------------------------------------------------------------------
    def _write_grouped(self, start: torch.Tensor, slot: torch.Tensor, users: torch.Tensor,
                       items: torch.Tensor) -> torch.Tensor:
        """Write events (in time order) into memories start [R, H, d]; event n goes to
        start[slot[n]]. Each memory takes its events in order: one padded [R, L] sequence of
        erase-add writes (``erase_add_final``), so a row with no event at a step is untouched."""
        R = start.shape[0]
        order = torch.sort(slot, stable=True).indices
        counts = torch.bincount(slot, minlength=R)
        first = torch.cumsum(counts, 0) - counts
        position = torch.arange(len(slot), device=slot.device) - first[slot[order]]                   # index within its row
        width = int(counts.max()) if len(slot) else 0
        w, e, a = (x[order] for x in self._write_inputs(users, items))
        sorted_slot = slot[order]

        def padded(x: torch.Tensor) -> torch.Tensor:
            out = x.new_zeros(R, width, x.shape[1])
            return out.index_put((sorted_slot, position), x)

        mask = torch.zeros(R, width, dtype=torch.bool, device=slot.device).index_put(
            (sorted_slot, position), torch.tensor(True, device=slot.device))
        state = MemoryState(start, torch.ones(start.shape[:2], dtype=torch.bool, device=start.device))
        if R * width * start[0].numel() <= self.SCAN_BUDGET:
            # every state of the padded sequences by the fused affine scan (one op per step
            # forward and backward), when they fit; the last step per row is its final memory
            states = erase_add_unroll(state, padded(w), padded(e), padded(a), mask).values
            return states[:, -1] if width else start
        return erase_add_final(state, padded(w), padded(e), padded(a), mask).values

    @torch.no_grad()
    def observe(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Write events (time order) into the memory without learning: serving, or a frozen model
        fed new data."""
        rows, slot = torch.unique(self.rows(users), return_inverse=True)
        self.memory[rows] = self._write_grouped(self.memory[rows], slot, users, items)
        self._pending = None

    def reset_memory(self) -> None:
        """Back to the empty (zero) memory, before replaying a stream from its start."""
        self.memory.zero_()
        self._pending = None

    def forget_pending(self) -> None:
        """Drop the truncated-gradient link to the last micro-batch (its writes stay in memory)."""
        self._pending = None

    # -- learning on the stream -----------------------------------------------------------------
    def _memory_before(self, rows: torch.Tensor) -> torch.Tensor:
        """Memory rows [R, H, d] as the next micro-batch reads them: rows the previous micro-batch
        wrote are recomputed from the memory before it with the current parameters, so the loss
        back-propagates into that write (E, A, keys); the other rows come from the buffer."""
        current = self.memory[rows]
        if self._pending is None or self._pending.exact:
            return current
        prev = self._pending
        prev_rows = prev.rows
        at = torch.searchsorted(prev_rows, rows).clamp(max=len(prev_rows) - 1)
        hit = prev_rows[at] == rows
        if not hit.any():       # no graph at all: the optimizer then skips the write's parameters
            return current      # (a zero gradient would still move them through Adam's momentum)
        rewritten = self._write_grouped(prev.start, prev.slot, prev.users, prev.items)
        return torch.where(hit[:, None, None], rewritten[at], current)

    def stream_step(self, users: torch.Tensor, items: torch.Tensor,
                    candidates: torch.Tensor) -> torch.Tensor:
        """One micro-batch of observed events (users, items [b], time order): scores of each
        event's candidates [b, C] from the memory before the micro-batch, then the events are
        written into the memory (in order; without gradient, with the current parameters)."""
        rows, slot = torch.unique(self.rows(users), return_inverse=True)
        start = self._memory_before(rows)                                          # [R, H, d]
        s = self.user_vectors(users, start[slot])
        scores = -(s[:, None, :] - self.item_embedding(candidates)).pow(2).sum(-1)
        with torch.no_grad():
            self.memory[rows] = self._write_grouped(start.detach(), slot, users, items)
        self._pending = _PendingWrite(rows, start.detach(), slot, users, items)
        return scores

    def stream_step_exact(self, users: torch.Tensor, items: torch.Tensor,
                          candidates: torch.Tensor) -> torch.Tensor:
        """The event-by-event reference of :meth:`stream_step` for one event (b = 1), written
        directly with the per-event read and ``erase_add_write``."""
        if len(users) != 1:
            raise ValueError("the exact stream step takes one event at a time")
        row = self.rows(users)
        memory = MemoryState(self.memory[row], torch.ones(1, self.memory.shape[1], dtype=torch.bool,
                                                           device=self.memory.device))
        prev = self._pending
        if prev is not None and prev.exact and bool(prev.rows == row):
            before = MemoryState(prev.start, memory.mask)
            memory = erase_add_write(before, *self._write_inputs(prev.users, prev.items))
        w = self.address(users)
        s = w[:, None, :] @ memory.values                                          # read
        s = s[:, 0] + self.user_embedding(users) if self.merge == "sum" else s[:, 0]
        scores = -(s[:, None, :] - self.item_embedding(candidates)).pow(2).sum(-1)
        with torch.no_grad():
            detached = memory.with_values(memory.values.detach())
            self.memory[row] = erase_add_write(detached, *self._write_inputs(users, items)).values
        self._pending = _PendingWrite(row, detached.values, torch.zeros_like(row), users, items, exact=True)
        return scores


__all__ = ["NMRN"]
