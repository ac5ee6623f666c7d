"""DEMN: a memory recommender for the survey's four open limitations (our design, not a paper).

Design proposal: ``specs/demn.md`` (B.1–B.8); what we changed and why: ``docs/models/demn.md``.
Closest published relatives: SCoRe (WSDM'20; item-side visitors, neighbours), HPMN (SIGIR'19) and
MIMN (KDD'19; evolving writes, lifelong state), UBR4CTR (SIGIR'20; retrieval over the history),
CSRM (SIGIR'19; other sessions' memory).

The idea. A user memory of S slots is written by every event with a *time-gated* write (L3),
and a candidate item j is scored from four reads: the item's memory of its recent visitors (L1),
the user's slots (two hops), the memories of the user's recent co-visitors (L2), and the top r
entries of the user's own history (L4):

    ẽ_j = q_j + Σ_{v∈V_j} a_v c_v,  a_v ∝ exp(q_j·p_v − λ log(1+age_v))     # B.2.1 (fast mode)
    r   = read(M_u, ReLU(W_h q_j + read(M_u, q_j)))                           # B.2.2, two hops
    n   = Σ_{v∈N_u} b_v m̄_v,        b_v ∝ exp(q_j·m̄_v + p_u·p_v)            # B.2.3
    h   = top_r_read(q_j; H_u),      bias −λ_h log(1+age)                      # B.2.4
    ŷ   = (p_u + r + g_n n + g_h h)·ẽ_j + b_j,  (g_n, g_h) = σ(W_g[p_u; r; n; h])  # B.2.5

and each event (u, i) writes ``time_gated_write`` (memory/time_gated.py) with x = ẽ_i (u itself
left out of V_i), resting value k_s + p_u, τ_s = softplus(θ_s), candidate
c_s = tanh(W_c[x; m′_s; n̄]) and gate σ(W_z[x; m′_s; n̄; φ(Δ)]), where n̄ is the neighbour read
without a candidate (b_v ∝ exp(p_u·p_v)).

Buffers (``models/demn_log.py``, with the leakage rules): V_j, the item's last L visitors
strictly before the scored event; N_u, the union of V_j over the user's last c items, u left
out; H_u, the user's last H items; m̄_v, user v's mean slot in a detached bank [U, d].

Deviations from the spec (reasons in docs/models/demn.md):
- Δ in units of the training data's mean gap between a user's events (``clock``; 1 step without
  timestamps); the read does not decay the memory to the request's time.
- Visitor and history recency by the age in steps; the neighbour read uses each neighbour's mean
  slot m̄_v. The bank is refreshed as each user's sequence passes through training, then frozen
  (serving reads it frozen: a state store never looks into other users' states).
- Training buffers hold only events strictly before the prefix's last event (global order); at
  inference they are frozen, so ẽ is one table and full ranking a product (the table keeps u in
  V_j: ranking excludes u's training items). No CMN mode, covariance regulariser or MLP head.
- Sessions: users < 0 read a learned anonymous user (row n_users of p) wherever p_u is read; it
  is never a visitor or neighbour (``anonymous_rate`` trains it; buffers go by identity).
- The recipes train with a full softmax over every item (``NextItemUserSoftmax``: the last-item
  read without the item memory scores all items as one product), the spec's BPR otherwise.

Copy read (``repeat = True``): a candidate-free read over H_u, w_m ∝ exp(h·q_m/√d − λ_h
log(1+age_m)), h = p_u + mean_s M_u,s, mixed in by a gate g = σ(w_c·h + b_c) as
ŷ' = log((1 − g)·exp(ŷ) + g·c) (RepeatNet's repeat/explore; ``models/demn_copy.py``).

L3 ablations (B.6): ``write`` = erase_add / gated / fifo (models/demn_writes.py),
``learn_timescales``; ``drift_slice`` (models/demn_drift.py) picks the users B.6 reports them on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from ..data.interactions import Interactions
from ..errors import ConfigError
from ..memory.read import CopyRead, masked_softmax
from ..memory.retrieval import top_r_read
from ..memory.state import ItemWindow, TensorState
from ..memory.time_gated import time_gated_scan
from .capabilities import (AnonymousScorer, HistoryScorer, MemoryEntry, NextItemPairwise, NextItemUserSoftmax,
                           StateExplainer)
from ..nn.rows import row_products, weighted_rows
from .chunks import chunked_items
from .demn_log import (LOG_BUFFERS, EventLog, elapsed_units, event_ranks, history_windows, last_items, last_times,
                       mean_gap, recent_windows, time_dtype, window_ages)
from .demn_copy import explain_demn_state, with_copy
from .demn_writes import erase_add_states, fifo_slot_states

#: Δ's log-bucket embedding φ: buckets ⌊log2(1 + Δ)⌋, the last one open-ended
DELTA_BUCKETS = 16
#: the slot writes (``model.write``): B.3's, then the L3 ablations of spec B.6
WRITES = ("time_gated", "erase_add", "gated", "fifo")
#: what Δ counts (``model.clock``): timestamps when the training data have them, else steps
CLOCKS = ("auto", "time", "steps")
#: what queries the user-side reads (``model.read``): each candidate (the spec) or the last item
READS = ("candidate", "user")


@dataclass(frozen=True)
class DEMNState(TensorState):
    """One user's serving state: the user (user long [B]), the slot memory M_u (values
    [B, S, d]), the history store H_u, its last H items oldest first (items long [B, W],
    mask bool [B, W]), and t_last(u), its last event's time (last_time float64 [B]; NaN: none,
    or unknown)."""

    user: torch.Tensor
    values: torch.Tensor
    items: torch.Tensor
    mask: torch.Tensor
    last_time: torch.Tensor
    ragged = ("items", "mask")
    memory_field = "values"

    @property
    def window(self) -> ItemWindow:
        return ItemWindow(self.items, self.mask)

    def trimmed(self) -> "DEMNState":
        window = self.window.trimmed()
        return replace(self, items=window.items, mask=window.mask)

    def index(self, rows: torch.Tensor) -> "DEMNState":
        """The states of ``rows`` without the padding only other rows needed (a store keeps a
        row as a replay would have built it)."""
        return super().index(rows).trimmed()


class DEMN(StateExplainer, HistoryScorer, AnonymousScorer, NextItemPairwise, NextItemUserSoftmax):
    """DEMN: item visitors, neighbours, a time-gated slot memory and a retrieved history.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        d, shared by every embedding and slot.
    slots : int
        S, user-memory slots (each with a learned key and timescale τ_s).
    visitors : int
        L, the item memory's last visitors (also each recent item's share of the neighbours).
    recent_items : int
        c, the user's latest items whose visitors are its neighbours (N = c·L at most).
    history : int
        H, the history store's capacity (the retrieval scans at most H entries).
    top_r : int
        r, history entries each candidate retrieves.
    beta : float
        Address sharpness β of the write.
    recency : float
        Initial λ and λ_h of the visitor and history recency penalties (then learned).
    item_memory, neighbours, history_read : bool
        The parts for L1, L2 and L4 (off: the ablations of spec B.6).
    read : "candidate" | "user"
        What queries the user-side reads (B.2.2–4): every candidate q_j (the spec) or the last
        item (STAMP's last click: one u, so full ranking and the softmax are one product u·ẽᵀ).
    static_neighbours : bool
        B.6's control for L2: in training, N_u from the whole training log (CMN's static
        neighbourhood, which sees co-visitors' later events) instead of visits before the event.
    write : "time_gated" | "erase_add" | "gated" | "fifo"
        The slot write from M⁰ = K + 1·p_uᵀ with x = ẽ_i: B.3's time-gated write, or an L3
        ablation (models/demn_writes.py): RUM-F's erase-add, the gate without Δ, RUM-I's FIFO.
    learn_timescales : bool
        Learn τ_s (default) or keep them at 1, 4, 16, … steps (B.6's fixed-τ ablation).
    clock : "auto" | "time" | "steps"
        What Δ counts: time in units of the training data's mean gap between a user's
        consecutive events ("time"; "auto" when the data carry timestamps), or events ("steps",
        Δ = 1). With the clock, queries, ``update`` and training read the events' ``times``.
    repeat : bool
        Add the copy read over the history store ("Copy read" above).
    anonymous_rate : float in [0, 1]
        The share of training sequences read as the anonymous user (row n_users of p, read by
        users < 0): 0 (default) never, 1 always (session data). Drawn per sequence.
    init_std : float

    Shapes
    ------
    state: DEMNState (user [B], values [B, S, d], items / mask [B, W ≤ H], last_time [B])
    prefix_scores: users [B], history [B, L], candidates [B, L, C] (times [B, L]) → [B, L, C]

    Example: ``model.prepare(train)`` (the event log), ``state = model.encode(users, history,
    mask)`` (= replaying ``update``), ``model.score_state(model.update(state, items), users)``.
    """

    data_buffers = LOG_BUFFERS
    explains = "item"                     # the history store's entries the top-r read retrieved
    state_type = DEMNState
    max_history = None                    # the slots are written by the whole history
    reads_known_users = True              # p_u; users < 0 read the anonymous user's row

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, slots: int = 4,
                 visitors: int = 20, recent_items: int = 2, history: int = 50, top_r: int = 10,
                 beta: float = 5.0, recency: float = 0.5, item_memory: bool = True,
                 neighbours: bool = True, history_read: bool = True, write: str = "time_gated",
                 learn_timescales: bool = True, anonymous_rate: float = 0.0, init_std: float = 0.1,
                 repeat: bool = False, clock: str = "auto", static_neighbours: bool = False,
                 read: str = "candidate"):
        super().__init__(n_users, n_items)
        if clock not in CLOCKS:
            raise ConfigError(f"model.clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        if read not in READS:
            raise ConfigError(f"model.read must be one of {', '.join(READS)}, got {read!r}")
        self.clock, self.static_neighbours, self.read = clock, static_neighbours, read
        if min(slots, visitors, recent_items, history, top_r) < 1:
            raise ValueError("slots, visitors, recent_items, history and top_r must be at least 1")
        if write not in WRITES:
            raise ValueError(f"model.write must be one of {', '.join(WRITES)}, got {write!r}")
        if not 0.0 <= anonymous_rate <= 1.0:
            raise ConfigError(f"model.anonymous_rate must be in [0, 1], got {anonymous_rate!r}")
        self.anonymous_rate = float(anonymous_rate)
        self.write, self.learn_timescales = write, learn_timescales
        self.dim, self.visitors, self.recent_items = dim, visitors, recent_items
        self.history, self.top_r, self.beta = history, top_r, beta
        self.use_item_memory, self.use_neighbours, self.use_history = item_memory, neighbours, history_read
        self.user_embedding = nn.Embedding(n_users, dim)          # p_u (+ the anonymous row, below)
        self.visitor_embedding = nn.Embedding(n_users, dim)       # c_v, a user as a visitor
        self.item_embedding = nn.Embedding(n_items, dim)          # q_i
        self.item_bias = nn.Embedding(n_items, 1)                 # b_j
        for table in (self.user_embedding, self.visitor_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)
        self.slot_keys = nn.Parameter(torch.randn(slots, dim) * init_std)        # K
        # τ_s from 1 to 4^(S−1) steps: short slots track drift, long ones keep taste
        tau = 4.0 ** torch.arange(slots, dtype=torch.float32)
        self.timescale_logit = nn.Parameter(tau + torch.log(-torch.expm1(-tau)))  # softplus⁻¹(τ)
        self.candidate_in = nn.Linear(2 * dim, dim)                 # W_c on [x; n̄] (shared by slots)
        self.candidate_slot = nn.Linear(dim, dim, bias=False)       # W_c on m′_s
        self.gate_in = nn.Linear(3 * dim, 1)                        # W_z on [x; n̄; φ(Δ)]
        self.gate_slot = nn.Linear(dim, 1, bias=False)              # W_z on m′_s
        self.delta_embedding = nn.Embedding(DELTA_BUCKETS, dim)     # φ(Δ)
        self.hop = nn.Linear(dim, dim)                              # W_h
        self.read_gates = nn.Linear(4 * dim, 2)                     # W_g → (g_n, g_h)
        self.visitor_recency = nn.Parameter(torch.tensor(float(recency)))   # λ
        self.history_recency = nn.Parameter(torch.tensor(float(recency)))   # λ_h
        # the event log (``prepare``; models/demn_log.py): visits by item, ranks by user
        for name, size in zip(LOG_BUFFERS, (n_items + 1, 0, 0, n_users + 1, 0)):
            self.register_buffer(name, torch.zeros(size, dtype=torch.long))
        self.register_buffer("bank", torch.zeros(n_users, dim))    # m̄_v, detached
        self.register_buffer("time_unit", torch.zeros(()))         # Δ's unit (float32: MPS too); 0: steps
        self._table: tuple[tuple, torch.Tensor] | None = None     # see _item_table
        self.timescale_logit.requires_grad_(learn_timescales)      # fixed τ: never updated
        if write == "erase_add":     # built last: the other weights keep the draws of the default
            self.erase_vector = nn.Linear(2 * dim, dim)             # W_e on [x; n̄]
            self.add_vector = nn.Linear(2 * dim, dim)               # W_a on [x; n̄]
        # the anonymous user, row n_users of p (users < 0 read it): appended last and at zero
        # (no random draw), so the other weights keep the draws of a DEMN without it
        with_anonymous = torch.cat([self.user_embedding.weight.detach(), torch.zeros(1, dim)])
        self.user_embedding = nn.Embedding.from_pretrained(with_anonymous, freeze=False)
        self.repeat = repeat
        self.softmax_unavailable = _softmax_unavailable(read, item_memory)
        if repeat:      # built last: the random draws of the other weights stay those of repeat=False
            self.copy = CopyRead(dim)                               # g = σ(w_c·h + b_c)
            nn.init.normal_(self.copy.gate.weight, std=init_std)
            nn.init.zeros_(self.copy.gate.bias)

    # -- the event log ------------------------------------------------------------------------
    def prepare(self, train: Interactions) -> None:
        """Index the training events by item (visitor buffers) and by user (their global ranks,
        the training cutoffs), and start the bank at every user's initial memory."""
        for name, tensor in EventLog.arrays(train, self.visit_key.device).items():
            setattr(self, name, tensor)
        unit = 0.0 if self.clock == "steps" else mean_gap(train)
        if self.clock == "time" and unit == 0.0:
            raise ConfigError('model.clock = "time" needs training events with timestamps (apart in time); '
                              'these have none: use "auto" or "steps"')
        self.time_unit.fill_(unit)
        with torch.no_grad():
            self.bank.copy_(self.slot_keys.mean(0) + self.user_embedding.weight[:self.n_users])
        self._table = None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A checkpoint from before the anonymous user (p with n_users rows) gets its row at
        its initial zero: such a model was never trained with it; one from before the clock
        counted steps (time unit 0)."""
        table = state_dict.get("user_embedding.weight")
        if table is not None and len(table) == self.n_users:
            state_dict = {**state_dict, "user_embedding.weight": F.pad(table, (0, 0, 0, 1))}
        state_dict = {"time_unit": torch.zeros(()), **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def reads_times(self) -> bool:
        """Δ counts time: the training data had timestamps (``prepare``) and ``clock`` allows."""
        return bool(self.time_unit > 0)

    def _elapsed(self, mask: torch.Tensor, times: torch.Tensor | None, last_time: torch.Tensor) -> torch.Tensor:
        """Δ of each event [B, T] (mask's shape): since the event before it in ``time_unit``
        (``elapsed_units``), or 1 step without the clock or its times."""
        if times is None or not self.reads_times:
            return torch.ones(mask.shape, device=mask.device)
        return elapsed_units(times, last_time, float(self.time_unit))

    @property
    def log(self) -> EventLog:
        return EventLog(*(getattr(self, name) for name in LOG_BUFFERS))

    @property
    def n_events(self) -> int:
        """E, the training events; rank E stands for "after all of them" (inference)."""
        return len(self.visit_user)

    def _visitors(self, items: torch.Tensor, cutoff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V_j: the last L visitors of items [...] before cutoff [...] (``EventLog.visitors``)."""
        return self.log.visitors(items, cutoff, self.visitors)

    # -- the querying user: its own row of p, or the anonymous one -------------------------------
    def _own_rows(self, users: torch.Tensor) -> torch.Tensor:
        """The row of p each querying user reads [...]: its own, n_users (the anonymous user) for
        users < 0 — a live session, a test session of a session dataset."""
        return torch.where(users < 0, self.n_users, users)

    def _training_rows(self, users: torch.Tensor) -> torch.Tensor:
        """``_own_rows`` with each training sequence's user replaced by the anonymous one with
        probability ``anonymous_rate``: per sequence, not per prefix, since an anonymous request
        is anonymous from its first event (and the prefixes share one unrolled memory). No RNG
        draw when the outcome is certain, so the default rate 0 trains exactly as before."""
        rows = self._own_rows(users)
        if not self.training or self.anonymous_rate == 0.0:
            return rows
        if self.anonymous_rate == 1.0:
            return torch.full_like(rows, self.n_users)
        hidden = torch.rand(rows.shape, device=rows.device) < self.anonymous_rate
        return torch.where(hidden, self.n_users, rows)

    def _ages(self, valid: torch.Tensor) -> torch.Tensor:
        """Steps back from each row's newest entry of a right-aligned buffer [..., L]: L−1 … 0."""
        L = valid.shape[-1]
        return torch.arange(L - 1, -1, -1, device=valid.device, dtype=torch.float32).expand(valid.shape)

    def _item_memory(self, items: torch.Tensor, cutoff: torch.Tensor,
                     exclude: torch.Tensor | None) -> torch.Tensor:
        """ẽ_j = q_j + Σ_v a_v c_v over V_j(cutoff) without user ``exclude`` [...] (None: nobody).
        items, cutoff long [...] → [..., d].  # eq. B.2.1"""
        q = self.item_embedding(items)
        if not self.use_item_memory:
            return q
        users, valid = self._visitors(items, cutoff)
        if exclude is not None:
            valid = valid & (users != exclude[..., None])
        logits = row_products(self.user_embedding(users), q) - self.visitor_recency * torch.log1p(self._ages(valid))
        a = masked_softmax(logits, valid)
        return q + weighted_rows(a, self.visitor_embedding(users))

    def _item_table(self) -> torch.Tensor:
        """ẽ of every item with the buffers frozen after training [n_items, d]; outside autograd
        kept until the weights or buffers change (a server pays for it once)."""
        def compute() -> torch.Tensor:
            items = torch.arange(self.n_items, device=self.device)
            return self._item_memory(items, torch.full_like(items, self.n_events), None)
        if torch.is_grad_enabled():
            return compute()
        tensors = (self.item_embedding.weight, self.user_embedding.weight, self.visitor_embedding.weight,
                   self.visitor_recency, self.visit_key, self.visit_user)
        key = tuple((t._version, t.data_ptr()) for t in tensors)
        if self._table is None or self._table[0] != key:
            self._table = (key, compute())
        return self._table[1]

    # -- neighbours (L2) -----------------------------------------------------------------------
    def _neighbours(self, users: torch.Tensor, recent: torch.Tensor, recent_mask: torch.Tensor,
                    cutoff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N_u: the visitors of recent items [..., c] before cutoff [...], user u (its identity,
        never the anonymous row) left out → ids, valid [..., c·L] (``EventLog.neighbours``); with
        ``static_neighbours`` before the end of the training log whatever the cutoff."""
        cutoff = torch.full_like(cutoff, self.n_events) if self.static_neighbours else cutoff
        return self.log.neighbours(users, recent, recent_mask, cutoff, self.visitors)

    def _neighbour_context(self, rows: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(m̄_v [..., N, d], p_u·p_v [..., N], n̄ [..., d]: the candidate-free read, b_v ∝
        exp(p_u·p_v), that enters the write); rows: the querying user's row of p (``_own_rows``)."""
        bank = self.bank[ids]                                                        # detached
        affinity = row_products(self.user_embedding(ids), self.user_embedding(rows))
        if not self.use_neighbours:
            return bank, affinity, bank.new_zeros(*ids.shape[:-1], self.dim)
        mean = (masked_softmax(affinity, valid)[..., None, :] @ bank)[..., 0, :]
        return bank, affinity, mean

    # -- write (L3) ----------------------------------------------------------------------------
    def _initial(self, rows: torch.Tensor) -> torch.Tensor:
        """M_u before any event and the resting value of its slots: k_s + p_u, [B, S, d]."""
        return self.slot_keys + self.user_embedding(rows)[:, None, :]

    def _timescales(self) -> torch.Tensor:
        return F.softplus(self.timescale_logit)                                     # τ_s

    def _write_all(self, rows: torch.Tensor, values: torch.Tensor, x: torch.Tensor, context: torch.Tensor,
                   mask: torch.Tensor, elapsed: torch.Tensor, return_all: bool) -> torch.Tensor:
        """The slot memory after every event [B, T, S, d] (or after the last, [B, S, d]) from
        values [B, S, d]: x, n̄ [B, T, d], mask and Δ [B, T], by ``model.write``. Everything that
        does not depend on the memory is computed for all events at once, outside any loop over time."""
        if x.shape[1] == 0:
            return values[:, None][:, :0] if return_all else values
        if self.write in ("time_gated", "gated"):
            return self._time_gated_states(rows, values, x, context, mask, elapsed, return_all)
        states = fifo_slot_states(values, x, mask) if self.write == "fifo" else erase_add_states(
            self.slot_keys, self.beta, self.erase_vector, self.add_vector, values, x, context, mask)
        return states if return_all else states[:, -1]

    def _time_gated_states(self, rows, values, x, context, mask, elapsed, return_all: bool = True) -> torch.Tensor:
        """B.3 (and, for ``write = "gated"``, the same write with neither decay nor φ(Δ)): the
        x, n̄ and φ(Δ) projections and the decay γ for all events (Δ: elapsed [B, T]), then the
        fused scan."""
        bucket = torch.log2(1 + elapsed).floor().long().clamp(max=DELTA_BUCKETS - 1)
        phi = self.delta_embedding(bucket)
        gamma = torch.exp(-elapsed[..., None] / self._timescales())                 # γ_s, [B, T, S]
        if self.write == "gated":           # no time term: m′ = m, and φ(Δ) does not enter the gate
            phi, gamma = torch.zeros_like(phi), torch.ones_like(gamma)
        cand_in = self.candidate_in(torch.cat([x, context], -1))                    # [B, T, d]
        gate_in = self.gate_in(torch.cat([x, context, phi], -1))[..., 0]
        weight = torch.cat([self.candidate_slot.weight, self.gate_slot.weight])     # [W_c; w_z]
        return time_gated_scan(values, self.slot_keys, x, self._initial(rows), gamma, cand_in,
                               gate_in, weight, mask, self.beta, return_all=return_all)

    def _history_inputs(self, users, rows, history, mask, cutoff):
        """What every position of a padded history writes: (x [B, T, d], neighbours ids and
        valid [B, T, N], their context (m̄, p_u·p_v, n̄)). u never counts as its own visitor,
        read as itself or as the anonymous user (rows [B]): the leakage rule goes by identity."""
        x = self._item_memory(history, cutoff, users[:, None].expand_as(history))
        recent, recent_mask = recent_windows(history, mask, self.recent_items)
        ids, valid = self._neighbours(users[:, None], recent, recent_mask, cutoff)
        return x, ids, valid, self._neighbour_context(rows[:, None], ids, valid)

    #: elements of the per-event buffers (visitors and neighbours, [rows, T, L + N, d] twice)
    #: one chunk of rows may gather when encoding outside autograd: about 1 GB
    ENCODE_CHUNK_ELEMENTS = 2 ** 28

    def _write_inputs(self, users, items, mask, cutoff) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, n̄) [B, T, d] of every event, as ``_history_inputs``; outside autograd in chunks of
        rows, since the visitor and neighbour buffers behind them take [B, T, L + c·L, d] twice
        (14 GB at once for a full-ranking batch of ml-100k's 943 users × 737 events)."""
        B, T = items.shape
        per_row = max(1, 2 * T * (self.visitors + self.recent_items * self.visitors) * self.dim)
        rows = max(1, self.ENCODE_CHUNK_ELEMENTS // per_row)
        if torch.is_grad_enabled() or rows >= B:
            x, _, _, (_, _, context) = self._history_inputs(users, self._own_rows(users), items, mask, cutoff)
            return x, context
        parts = [self._write_inputs(users[i:i + rows], items[i:i + rows], mask[i:i + rows], cutoff[i:i + rows])
                 for i in range(0, B, rows)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    # -- the StatefulScorer contract -----------------------------------------------------------
    def init_state(self, users: torch.Tensor) -> DEMNState:
        window = ItemWindow.empty(len(users), device=self.device)
        never = torch.full((len(users),), float("nan"), dtype=time_dtype(self.device), device=self.device)
        return DEMNState(users, self._initial(self._own_rows(users)), window.items, window.mask, never)

    def update(self, state: DEMNState, items: torch.Tensor, times: torch.Tensor | None = None) -> DEMNState:
        """One event per row (items long [B]) at times float64 [B] (NaN or None: unknown)."""
        return self.encode_more(state, items[:, None], torch.ones_like(items[:, None], dtype=torch.bool),
                                None if times is None else times[:, None])

    def encode(self, users, history, mask, times: torch.Tensor | None = None) -> DEMNState:
        return self.encode_more(self.init_state(users), history, mask, times)

    def encode_more(self, state: DEMNState, history: torch.Tensor, mask: torch.Tensor,
                    times: torch.Tensor | None = None) -> DEMNState:
        """The state after more events (history [B, T], mask [B, T], right-padded as every
        query's is, at times float64 [B, T] when the clock runs); the neighbours of the first
        new events include the state's own last items, as a replay's would."""
        users, old = state.user, state.window
        tail, tail_mask = last_items(old, self.recent_items - 1)      # context the new events need
        items, full = torch.cat([tail, history], 1), torch.cat([tail_mask, mask], 1)
        cutoff = torch.full_like(items, self.n_events)                # inference: all training events
        x, context = self._write_inputs(users, items, full, cutoff)
        width = tail.shape[1]
        elapsed = self._elapsed(mask, times, state.last_time)
        memory = self._write_all(self._own_rows(users), state.values, x[:, width:], context[:, width:], mask,
                                 elapsed, return_all=False)
        window = ItemWindow.from_history(torch.cat([old.items, history], 1), torch.cat([old.mask, mask], 1),
                                         self.history)
        last = state.last_time if times is None or not self.reads_times else last_times(times, mask, state.last_time)
        return DEMNState(users, memory, window.items, window.mask, last)

    # -- read and score ------------------------------------------------------------------------
    def _score(self, args, cand_q, cand_hop, cand_e, cand_b) -> torch.Tensor:
        """ŷ = u·ẽ_j + b_j for candidates of one or many states (``args``: ``_user_vectors``'s),
        cand_e [..., C, d], cand_b [..., C] → [..., C]; read by the candidates themselves
        (cand_q, cand_hop [..., C, d]) or, with ``read = "user"``, by the last item (one u)."""
        if self.read == "user":
            return (self._last_item_user(args) * cand_e).sum(-1) + cand_b
        return (self._user_vectors(*args, cand_q, cand_hop) * cand_e).sum(-1) + cand_b

    def _last_item_user(self, args) -> torch.Tensor:
        """u read by the last item (``read = "user"``): ``_user_vectors``'s args → [..., 1, d]."""
        query = self._last_item_queries(args[2], args[3])
        return self._user_vectors(*args, query, self.hop(query))

    @staticmethod
    def _last_item_queries(hist_q: torch.Tensor, hist_mask: torch.Tensor) -> torch.Tensor:
        """q of the newest entry of each history window (its last valid position, whether the
        window is left-aligned, a state's, or right-aligned, a training prefix's; 0 when empty) as
        the one query of ``read = "user"``: hist_q [..., H, d], hist_mask [..., H] → [..., 1, d]."""
        positions = torch.arange(hist_mask.shape[-1], device=hist_mask.device)
        newest = torch.where(hist_mask, positions, 0).amax(-1, keepdim=True)
        q = hist_q.gather(-2, newest[..., None].expand(*newest.shape, hist_q.shape[-1]))
        return q * hist_mask.any(-1)[..., None, None]

    def _user_vectors(self, rows, memory, hist_q, hist_mask, hist_age, bank, affinity, nb_valid,
                      cand_q, cand_hop) -> torch.Tensor:
        """u = p_u + r + g_n n + g_h h, each read queried by cand_q [..., C, d] (cand_hop: W_h q,
        given so that full ranking projects each item once). Leading dims ``...`` ([B] or
        [B, T]): rows [...] (the user's row of p, ``_own_rows``), memory [..., S, d], hist_q
        [..., H, d] (training: each prefix's window, ``history_windows``), hist_mask / hist_age
        [..., H], bank [..., N, d], affinity / nb_valid [..., N] → [..., C, d].  # eq. B.2.2–B.2.5"""
        scale = 1 / math.sqrt(self.dim)
        r = torch.softmax(cand_q @ memory.transpose(-1, -2) * scale, -1) @ memory          # hop 1
        z = torch.relu(cand_hop + r)
        r = torch.softmax(z @ memory.transpose(-1, -2) * scale, -1) @ memory               # hop 2
        n = torch.zeros_like(r)
        if self.use_neighbours:
            b = masked_softmax(cand_q @ bank.transpose(-1, -2) + affinity[..., None, :], nb_valid[..., None, :])
            n = b @ bank
        h = torch.zeros_like(r)
        if self.use_history:
            bias = -self.history_recency * torch.log1p(hist_age)
            h = top_r_read(cand_q, hist_q, hist_q, hist_mask, self.top_r, bias)[0]
        p = self.user_embedding(rows)[..., None, :]                                        # [..., 1, d]
        g = torch.sigmoid(self._gate_logits(p, r, n, h))                                   # g_n, g_h
        return p + r + g[..., :1] * n + g[..., 1:] * h

    def _gate_logits(self, p, r, n, h) -> torch.Tensor:
        """W_g[p_u; r; n; h] + b as four products: p_u [..., 1, d] enters once, not per candidate,
        and no [..., C, 4d] concatenation is built (it was a fifth of a full-ranking pass)."""
        W_p, W_r, W_n, W_h = self.read_gates.weight.split(self.dim, dim=1)
        return F.linear(p, W_p, self.read_gates.bias) + r @ W_r.T + n @ W_n.T + h @ W_h.T

    def score_state(self, state: DEMNState, users, items=None) -> torch.Tensor:
        window, B = state.window, len(users)
        hist_age = window_ages(window)
        recent, recent_mask = last_items(window, self.recent_items)
        ids, valid = self._neighbours(users, recent, recent_mask, torch.full_like(users, self.n_events))
        rows = self._own_rows(users)
        bank, affinity, _ = self._neighbour_context(rows, ids, valid)
        table = self._item_table()
        args = (rows, state.values, self.item_embedding(window.items), window.mask, hist_age, bank, affinity, valid)
        if items is not None:
            q = self.item_embedding(items)
            scores = self._score(args, q, self.hop(q), table[items], self.item_bias(items)[..., 0])
            return with_copy(self, scores, args, window.items, items)
        if self.read == "user":                                  # one user vector: one product
            user = self._last_item_user(args)[:, 0]
            return with_copy(self, user @ table.T + self.item_bias.weight[:, 0], args, window.items)
        out = state.values.new_empty(B, self.n_items)
        per_item = 4 * self.dim + window.items.shape[1] + ids.shape[1] + 2 * state.values.shape[1]
        for chunk in chunked_items(self.n_items, B, per_item):
            q = self.item_embedding.weight[chunk]
            out[:, chunk] = self._score(args, q.expand(B, -1, -1), self.hop(q).expand(B, -1, -1),
                                        table[chunk].expand(B, -1, -1),
                                        self.item_bias.weight[chunk, 0].expand(B, -1))
        return with_copy(self, out, args, window.items)

    # -- explanations --------------------------------------------------------------------------------
    @torch.no_grad()
    def explain_state(self, state: DEMNState, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        return explain_demn_state(self, state, users, items)

    # -- training ------------------------------------------------------------------------------
    def _prefix_reads(self, users, history, mask, times) -> tuple[tuple, torch.Tensor, torch.Tensor]:
        """``_user_vectors``'s leading arguments [B, T, ...] for every prefix of a padded history
        [B, T], its windows' items [B, T, W] and the cutoffs [B, T]. A share ``anonymous_rate``
        of training sequences reads the anonymous user; the buffers still go by identity (u's
        visits stay out). The times [B, T] give each write its Δ; training refreshes the bank."""
        cutoff = self.log.cutoffs(users, mask, self.training)
        rows = self._training_rows(users)
        x, ids, valid, (bank, affinity, context) = self._history_inputs(users, rows, history, mask, cutoff)
        never = torch.full(users.shape, float("nan"), dtype=time_dtype(users.device), device=users.device)
        states = self._write_all(rows, self._initial(rows), x, context, mask, self._elapsed(mask, times, never),
                                 return_all=True)
        B, T = history.shape
        hist_q, hist_items, visible, hist_age = history_windows(self.item_embedding(history), history, mask,
                                                                self.history)
        if self.training:
            self._refresh_bank(users, states, mask)
        args = (rows[:, None].expand(B, T), states, hist_q, visible, hist_age, bank, affinity, valid)
        return args, hist_items, cutoff

    def prefix_scores(self, users, history, mask, candidates, times: torch.Tensor | None = None) -> torch.Tensor:
        args, hist_items, cutoff = self._prefix_reads(users, history, mask, times)
        if self.training:       # leave u out of its candidates' visitors, and the future
            cand_e = self._item_memory(candidates, cutoff[..., None].expand_as(candidates),
                                       users[:, None, None].expand_as(candidates))
        else:
            cand_e = self._item_table()[candidates]
        cand_q = self.item_embedding(candidates)
        scores = self._score(args, cand_q, self.hop(cand_q), cand_e, self.item_bias(candidates)[..., 0])
        return with_copy(self, scores, args, hist_items, candidates)

    def prefix_user_outputs(self, users, history, mask, positions, times: torch.Tensor | None = None) -> torch.Tensor:
        """ŷ = u·q_j + b_j of every item after each selected prefix (with the copy read ŷ', whose softmax
        is its mixture): one u per prefix and ẽ_j = q_j, so one product (else ``softmax_unavailable``)."""
        if self.softmax_unavailable is not None:
            raise ConfigError(f"DEMN {self.softmax_unavailable}")
        args, hist_items, _ = self._prefix_reads(users, history, mask, times)
        user = self._last_item_user(args)[..., 0, :][positions]                  # [P, d]
        scores = user @ self.item_embedding.weight.T + self.item_bias.weight[:, 0]
        return with_copy(self, scores, [a[positions] for a in args[:5]], hist_items[positions])

    @torch.no_grad()
    def _refresh_bank(self, users: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> None:
        """m̄_v ← the mean slot of each user's memory after its last event in this batch: the
        bank is at most one epoch stale, with no cross-user back-propagation."""
        last = (mask.sum(1) - 1).clamp_min(0)
        final = values[torch.arange(len(users), device=users.device), last]        # [B, S, d]
        self.bank[users] = final.mean(1).to(self.bank.dtype)


def _softmax_unavailable(read: str, item_memory: bool) -> str | None:
    """Why a DEMN of these settings cannot score all items as one product per training prefix
    (None: it can; ``NextItemUserSoftmax``)."""
    reasons = {'reads its memory with every candidate; set model.read = "user"': read != "user",
               "reads each item's visitors before every prefix; set model.item_memory = false": item_memory}
    return next((reason for reason, applies in reasons.items() if applies), None)


__all__ = ["DEMN", "DEMNState", "WRITES", "event_ranks"]
