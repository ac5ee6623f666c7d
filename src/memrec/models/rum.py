"""RUM: sequential recommendation with user memory networks, item level and feature level.

Chen, Xu, Zhang, Tang, Cao, Qin, Zha. "Sequential Recommendation with User Memory Networks."
WSDM 2018. No official code exists; the equations below follow the paper as summarised in the
survey and in the spec ``rum-ksr-stamp-nmrn.md`` §1 (several details there are marked
unverified — see "Reconstructed choices").

Both variants keep a per-user memory M^u of K slots, read it with softmax attention of
strength β, merge the read with the user's long-term embedding and score like BPR-MF:

* read      z_k = softmax_k(β · w_k),  m_u = Σ_k z_k m_k         → ``masked_softmax``
* merge     p_u^t = p_u + α · m_u                                  (MERGE as a weighted sum)
* score     ŷ_ui = p_u^tᵀ q_i  (the paper's σ(·) is the BCE loss's; ranking ignores it)

**RUM-I** (:class:`RUMItem`): the memory holds the embeddings of the user's K latest items
(FIFO write, :func:`~memrec.memory.write.fifo_append`; all prefixes at once with
:func:`~memrec.memory.write.fifo_positions`), addressed by w_k = q_iᵀ m_k.

**RUM-F** (:class:`RUMFeature`): K global feature keys f_k and a per-user value memory,
addressed by w_k = q_iᵀ f_k, written after each consumed item q with its address
z = softmax(β qᵀF) by erase and add (:func:`~memrec.memory.write.erase_add_write`):
e = σ(E q + b_e), a = tanh(A q + b_a), m_k ← m_k ⊙ (1 − z_k e) + z_k a.

The read query is the candidate item (``query="candidate"``, the paper's design: which memories
resemble the item being scored), so the user vector differs per candidate. Full ranking stays one
batched matrix product because the merged score expands:

    ŷ_ui = p_uᵀq_i + α Σ_k z_ik · (m_kᵀ q_i)

and m_kᵀ q_i for all items is ``M^u @ Qᵀ`` ([K, n_items] per user). For RUM-I, w_ik = m_kᵀ q_i
is the same product, so one matmul gives both the address and the read.

Copy read (RUM-I, ``repeat = True``; off by default, so the shipped results do not change)
------------------------------------------------------------------------------------------
RUM-I's memory holds the user's K latest items, but ŷ can only score an item through its
embedding. With the copy read the memory's attention becomes a distribution c over the items the
slots hold (summed over repeated slots), mixed in by a learned gate g = σ(w·(p_u + α·m_u) + b)
(RepeatNet's repeat/explore decision, Ren et al. 2019; our addition, not the paper's). RUM trains
with pairwise losses against sampled negatives, never a catalogue softmax, so the mixture is
taken of the *unnormalised* scores (:func:`~memrec.memory.read.copy_scores`):

    ŷ'_ui = log((1 − g)·exp(ŷ_ui) + g·c_i)

A softmax of ŷ' over the catalogue is exactly a repeat/explore mixture (with the gate rescaled
by the partition function Σ_j exp(ŷ_uj)), so ranking by ŷ' ranks by that mixture and a sampled
softmax over ŷ' approximates its log-likelihood, while a few candidates are scored without the
normaliser. The copy's distribution is one read per state, with the last item as the query (the
``query="last"`` read): the candidate query reads the memory once per candidate, and those reads
do not form one distribution over items. RUM-F's slots hold features, not items: no copy read.

Reconstructed choices (constructor options; defaults argued in ``docs/models/rum.md``): read
query candidate (``"last"``: the last consumed item, a single user vector per state); α = 0.2;
β = 1; K = 20 (RUM-I: items; RUM-F: feature slots); RUM-F's initial memory learned (shared by
all users; ``"zeros"`` as option); one item table shared by the memory and the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..memory.read import CopyRead, copy_candidate_scores, copy_scores, masked_softmax, repeat_share
from ..memory.state import MemoryState, TensorState
from ..memory.write import (UnrolledStates, erase_add_final, erase_add_unroll, erase_add_write,
                             fifo_append, fifo_positions, fifo_states, fifo_window)
from .base import Query
from .capabilities import (Explainer, StateExplainer, HistoryScorer, MemoryEntry, NextItemPairwise,
                           StatefulScorer, mode_entries, ranked_entries)
from .chunks import chunked_items

QUERIES = ("candidate", "last")


@dataclass(frozen=True)
class FeatureMemory(TensorState):
    """RUM-F's state: the value memory values [B, K, d] (every slot in use) and the embedding of
    the last consumed item last [B, d] (zero before the first event; the ``last`` query's)."""

    values: torch.Tensor
    last: torch.Tensor
    memory_field = "values"

    @property
    def memory(self) -> MemoryState:
        return MemoryState(self.values, torch.ones(self.values.shape[:2], dtype=torch.bool,
                                                   device=self.values.device))


@dataclass(frozen=True)
class RecentItems(TensorState):
    """RUM-I's state with the copy read: the FIFO memory (values [B, K, d], mask [B, K], newest
    in the last slot) and the item each slot holds, items long [B, K] (0 in empty slots) — what
    the copy turns the attention into."""

    values: torch.Tensor
    mask: torch.Tensor
    items: torch.Tensor
    memory_field = "items"

    @property
    def memory(self) -> MemoryState:
        return MemoryState(self.values, self.mask)

    def entries(self) -> torch.Tensor:
        return self.items[0][self.mask[0]]


class _RUM(StatefulScorer, HistoryScorer, NextItemPairwise, Explainer):
    """What both variants share: p_u, q_i, α, β, the read query, merge and score."""

    def __init__(self, n_users: int, n_items: int, *, dim: int, slots: int, alpha: float,
                 beta: float, query: str, init_std: float):
        super().__init__(n_users, n_items)
        if query not in QUERIES:
            raise ValueError(f"query must be one of {', '.join(QUERIES)}, not {query!r}")
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots, self.alpha, self.beta, self.query = slots, alpha, beta, query
        self.user_embedding = nn.Embedding(n_users, dim)     # p_u, long-term preference
        self.item_embedding = nn.Embedding(n_items, dim)     # q_i, also what memories hold
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)

    def _merge_score(self, users: torch.Tensor, q: torch.Tensor, read_score: torch.Tensor) -> torch.Tensor:
        """p_uᵀq + α·(read term). users [B], q [B, ..., d], read_score [B, ...]."""
        p = self.user_embedding(users)
        p = p.reshape(p.shape[0], *([1] * (q.dim() - 2)), p.shape[1])
        return (p * q).sum(-1) + self.alpha * read_score


class RUMItem(_RUM):
    """RUM-I: attention over the user's K most recent items.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Embedding size d.
    slots : int
        K, how many recent items the memory keeps.
    alpha : float
        MERGE weight: p_u + α·m_u.
    beta : float
        Attention strength: softmax(β·w).
    query : "candidate" | "last"
        What reads the memory: the item being scored (paper) or the last consumed item.
    init_std : float
        Normal init of both embedding tables.
    repeat : bool
        Add the copy read: the last item's attention over the memory becomes a distribution over
        the remembered items, mixed into the scores by a learned gate (see "Copy read" above).

    Shapes
    ------
    state: MemoryState values [B, K, d] (item embeddings, newest in the last slot), mask [B, K];
    with ``repeat`` a :class:`RecentItems` (the same and the slots' items [B, K])
    prefix_scores: history [B, L], candidates [B, L, C] → [B, L, C]
    """

    explains = "item"
    state_type = MemoryState

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, slots: int = 20,
                 alpha: float = 0.2, beta: float = 1.0, query: str = "candidate",
                 init_std: float = 0.1, repeat: bool = False):
        super().__init__(n_users, n_items, dim=dim, slots=slots, alpha=alpha, beta=beta,
                         query=query, init_std=init_std)
        self.repeat = repeat
        if repeat:      # built last: the random draws of the other weights stay those of repeat=False
            self.state_type = RecentItems       # the copy needs the slots' items, not only their vectors
            self.copy = CopyRead(dim)           # gate g = σ(w·(p_u + α·m_u) + b): repeat vs explore
            nn.init.normal_(self.copy.gate.weight, std=init_std)
            nn.init.zeros_(self.copy.gate.bias)

    # -- state --------------------------------------------------------------------------------
    def init_state(self, users: torch.Tensor) -> MemoryState | RecentItems:
        memory = MemoryState.empty(len(users), self.slots, self.item_embedding.embedding_dim,
                                   dtype=self.item_embedding.weight.dtype, device=users.device)
        if not self.repeat:
            return memory
        return RecentItems(memory.values, memory.mask, users.new_zeros(len(users), self.slots))

    def update(self, state: MemoryState | RecentItems, items: torch.Tensor) -> MemoryState | RecentItems:
        if not self.repeat:
            return fifo_append(state, self.item_embedding(items))                  # FIFO write
        memory = fifo_append(state.memory, self.item_embedding(items))
        slot_items = torch.cat([state.items[:, 1:], items[:, None]], dim=1)        # the same shift
        return RecentItems(memory.values, memory.mask, slot_items)

    def encode(self, users, history, mask) -> MemoryState | RecentItems:
        if history.shape[1] == 0:
            return self.init_state(users)
        memory = fifo_window(self.item_embedding(history), mask, self.slots)       # the last K items
        if not self.repeat:
            return memory
        return RecentItems(memory.values, memory.mask, self._slot_items(history, mask, only_last=True)[:, 0])

    def _slot_items(self, history: torch.Tensor, mask: torch.Tensor, only_last: bool = False) -> torch.Tensor:
        """The item in every slot of every FIFO state of history [B, L] (0 where empty):
        [B, L, K] (``only_last``: [B, 1, K])."""
        positions, filled = fifo_positions(mask, self.slots, only_last=only_last)
        B, T, K = positions.shape
        return history.gather(1, positions.reshape(B, T * K)).reshape(B, T, K) * filled

    # -- read ---------------------------------------------------------------------------------
    def _read_score(self, memory: torch.Tensor, slot_mask: torch.Tensor, q: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """α's term and the attention. memory [..., K, d], slot_mask [..., K], q [..., C, d]
        → (Σ_k z_ck m_kᵀq_c [..., C], z [..., C, K])."""
        if self.query == "candidate":
            w = q @ memory.transpose(-1, -2)                                       # w_ck = q_cᵀ m_k
            z = masked_softmax(self.beta * w, slot_mask.unsqueeze(-2).expand_as(w))
            return (z * w).sum(-1), z
        last = memory[..., -1:, :]                                                 # newest slot
        z = masked_softmax(self.beta * (last @ memory.transpose(-1, -2)), slot_mask.unsqueeze(-2))
        m_u = z @ memory                                                           # [..., 1, d]
        return (q * m_u).sum(-1), z.expand(*q.shape[:-1], z.shape[-1])

    def score_state(self, state: MemoryState | RecentItems, users, items=None) -> torch.Tensor:
        scores = self._catalogue_scores(state, users, items)
        if not self.repeat:
            return scores
        weights, gate = self._copy_read(users, state.values, state.mask)
        if items is None:                                  # the product above + one sparse write
            return copy_scores(scores, weights, state.items, state.mask, gate)
        return copy_candidate_scores(scores, items, weights, state.items, state.mask, gate)

    def _catalogue_scores(self, state: MemoryState | RecentItems, users, items=None) -> torch.Tensor:
        """ŷ of the candidates items [B, C], or of every item."""
        if items is not None:
            q = self.item_embedding(items)                                         # [B, C, d]
            return self._merge_score(users, q, self._read_score(state.values, state.mask, q)[0])
        if self.query == "last":                                                  # one user vector
            return self._user_vectors(users, state) @ self.item_embedding.weight.T
        return self._score_all_candidates(state, users)

    def _last_read(self, memory: torch.Tensor, slot_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The read with the last item as the query: memory [..., K, d], slot_mask [..., K] →
        (m_u [..., d], z [..., K])."""
        last = memory[..., -1:, :]
        z = masked_softmax(self.beta * (last @ memory.transpose(-1, -2)), slot_mask.unsqueeze(-2))
        return (z @ memory).squeeze(-2), z.squeeze(-2)

    def _user_vectors(self, users, state: MemoryState) -> torch.Tensor:
        """p_u + α·m_u with the last item as the query. → [B, d]"""
        return self.user_embedding(users) + self.alpha * self._last_read(state.values, state.mask)[0]

    def _copy_read(self, users: torch.Tensor, memory: torch.Tensor, slot_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The copy's slot weights (the last item's read) and gate logit, from p_u + α·m_u.
        users [B], memory [B, ..., K, d], slot_mask [B, ..., K] → (z [B, ..., K], logit [B, ...])."""
        m_u, z = self._last_read(memory, slot_mask)
        p = self.user_embedding(users)
        p = p.reshape(p.shape[0], *([1] * (m_u.dim() - 2)), p.shape[1])
        return z, self.copy.gate_logit(p + self.alpha * m_u)

    def _score_all_candidates(self, state: MemoryState, users, rows_per_block: int = 64) -> torch.Tensor:
        """Full ranking with the candidate as the query. w = M^u Qᵀ is one GEMM per block of
        users; the softmax over slots is the only [B, K, n_items] elementwise work, so users are
        processed in blocks of similar memory fill, each block trimmed to its fullest memory
        (slots are right-aligned: the filled ones are the last)."""
        table = self.item_embedding.weight                                         # [n, d]
        scores = self.user_embedding(users) @ table.T                              # p_uᵀ q_i
        filled = state.mask.sum(1)
        for rows in torch.argsort(filled).split(rows_per_block):
            k = int(filled[rows].max())
            if k == 0:
                continue
            memory, slot_mask = state.values[rows, -k:], state.mask[rows, -k:]      # [b, k, d], [b, k]
            for items in chunked_items(self.n_items, len(rows), 3 * k):
                w = memory @ table[items].T                                         # [b, k, n] w_ki = m_kᵀ q_i
                z = masked_softmax(self.beta * w, slot_mask[:, :, None], dim=1)     # over slots
                scores[rows, items] += self.alpha * (z * w).sum(1)
        return scores

    def prefix_scores(self, users, history, mask, candidates) -> torch.Tensor:
        states = fifo_states(self.item_embedding(history), mask, self.slots)      # memory after each event
        memory, slot_mask = states.values, states.mask                             # [B, L, K, d], [B, L, K]
        q = self.item_embedding(candidates)                                        # [B, L, C, d]
        scores = self._merge_score(users, q, self._read_score(memory, slot_mask, q)[0])
        if not self.repeat:
            return scores
        weights, gate = self._copy_read(users, memory, slot_mask)                  # per prefix
        return copy_candidate_scores(scores, candidates, weights, self._slot_items(history, mask),
                                     slot_mask, gate)

    # -- explanations -------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, query: Query, items: torch.Tensor) -> list[list[MemoryEntry]]:
        """The remembered past items with the attention each got when scoring the item.

        With the copy read, each item's entries start with how it was recommended: a "repeat"
        entry (id: the FIFO slot of the item's latest copy, newest = K − 1; weight: the share of
        its score's mixture the copy gave) when the copy gave at least half, else an "explore"
        entry (id -1, weight: the catalogue's share)."""
        state = self.encode(query.users, query.history, query.mask)
        q = self.item_embedding(items)[None]                                       # [1, C, d]
        z = self._read_score(state.values, state.mask, q)[1][0]                    # [C, K]
        positions, filled = fifo_positions(query.mask, self.slots, only_last=True)
        remembered = query.history[0, positions[0, 0]]
        valid = filled[0, 0]
        ranked = [ranked_entries("item", remembered[valid], row[valid]) for row in z]
        if not self.repeat:
            return ranked
        weights, gate = self._copy_read(query.users, state.values, state.mask)
        scores = self.score_state(state, query.users)
        share = repeat_share(scores, weights, state.items, state.mask, gate)[0, items]
        modes = mode_entries(share, state.items[0], state.mask[0], items)
        return [[mode, *entries] for mode, entries in zip(modes, ranked)]


class RUMFeature(_RUM, StateExplainer):
    """RUM-F: K latent feature slots, a per-user value memory written by erase and add.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Embedding size d (keys, values and items share it).
    slots : int
        K, the number of feature slots.
    alpha, beta, query, init_std
        As in :class:`RUMItem`; the candidate query addresses the slots by q_iᵀ f_k.
    memory_init : "learned" | "zeros"
        The value memory before a user's first event: one learned [K, d] matrix shared by all
        users (DKVMN's choice), or zeros.

    Shapes
    ------
    state: (MemoryState values [B, K, d] with mask all True, last item embedding [B, d])
    prefix_scores: history [B, L], candidates [B, L, C] → [B, L, C]
    """

    explains = "slot"
    state_type = FeatureMemory

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, slots: int = 20,
                 alpha: float = 0.2, beta: float = 1.0, query: str = "candidate",
                 memory_init: str = "learned", init_std: float = 0.1):
        super().__init__(n_users, n_items, dim=dim, slots=slots, alpha=alpha, beta=beta,
                         query=query, init_std=init_std)
        if memory_init not in ("learned", "zeros"):
            raise ValueError(f"memory_init must be learned or zeros, not {memory_init!r}")
        self.feature_keys = nn.Parameter(torch.randn(slots, dim) * init_std)      # F = [f_1..f_K]
        self.erase = nn.Linear(dim, dim)                                           # E, b_e
        self.add = nn.Linear(dim, dim)                                             # A, b_a
        self.initial_memory = (nn.Parameter(torch.randn(slots, dim) * init_std)
                               if memory_init == "learned" else None)
        self._addresses: tuple[tuple, torch.Tensor] | None = None   # see _item_addresses

    # -- state: (value memory, embedding of the last consumed item) -----------------------------
    def init_state(self, users: torch.Tensor) -> FeatureMemory:
        K, d = self.feature_keys.shape
        values = (self.initial_memory.expand(len(users), K, d) if self.initial_memory is not None
                  else self.feature_keys.new_zeros(len(users), K, d))
        return FeatureMemory(values, values.new_zeros(len(users), d))

    def _address(self, q: torch.Tensor) -> torch.Tensor:
        """z = softmax_k(β qᵀf_k). q [..., d] → [..., K]."""
        return torch.softmax(self.beta * (q @ self.feature_keys.T), dim=-1)

    def _write_inputs(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What consuming item q [..., d] writes: address z [..., K], erase e and add a [..., d]."""
        return self._address(q), torch.sigmoid(self.erase(q)), torch.tanh(self.add(q))

    def _write(self, memory: MemoryState, q: torch.Tensor) -> MemoryState:
        """Erase-add write of one consumed item per row, q [B, d]."""
        return erase_add_write(memory, *self._write_inputs(q))

    def update(self, state: FeatureMemory, items: torch.Tensor) -> FeatureMemory:
        q = self.item_embedding(items)
        return FeatureMemory(self._write(state.memory, q).values, q)

    def _write_all(self, users, q_seq: torch.Tensor, mask) -> UnrolledStates:
        """The memory after every event of a padded sequence q_seq [B, L, d]: the addresses,
        erase and add vectors of all events in three batched ops, then one affine scan."""
        return erase_add_unroll(self.init_state(users).memory, *self._write_inputs(q_seq), mask)

    def encode(self, users, history, mask):
        # keeping only the current memory: the scan's [B, L, K, d] stack of every state would be
        # gigabytes for a full-ranking batch of long histories
        q_seq = self.item_embedding(history)
        memory = erase_add_final(self.init_state(users).memory, *self._write_inputs(q_seq), mask)
        length = mask.sum(1)
        last = q_seq.gather(1, (length - 1).clamp_min(0)[:, None, None].expand(-1, 1, q_seq.shape[2]))
        return FeatureMemory(memory.values, last[:, 0] * (length > 0)[:, None])

    # -- read ---------------------------------------------------------------------------------
    def _read_score(self, memory: torch.Tensor, q: torch.Tensor, last: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [..., K, d], q [..., C, d], last [..., d] →
        (Σ_k z_ck m_kᵀq_c [..., C], z [..., C, K])."""
        if self.query == "candidate":
            z = self._address(q)                                                   # [..., C, K]
            return (z * (q @ memory.transpose(-1, -2))).sum(-1), z
        z = self._address(last).unsqueeze(-2)                                      # [..., 1, K]
        return (q * (z @ memory)).sum(-1), z.expand(*q.shape[:-1], z.shape[-1])

    def score_state(self, state: FeatureMemory, users, items=None) -> torch.Tensor:
        memory, last = state.memory, state.last
        if items is not None:
            q = self.item_embedding(items)
            return self._merge_score(users, q, self._read_score(memory.values, q, last)[0])
        table = self.item_embedding.weight                                         # [n, d]
        p = self.user_embedding(users)
        if self.query == "last":                                                   # one user vector
            m_u = (self._address(last)[:, None, :] @ memory.values)[:, 0]
            return (p + self.alpha * m_u) @ table.T
        if len(users) < table.shape[1]:
            return p @ table.T + self.alpha * self._read_scores_per_user(memory.values)
        # Σ_k z_ik m_kᵀq_i = ⟨vec(M^u), vec(z_i ⊗ q_i)⟩, and z_i does not depend on the user:
        # for a large batch full ranking is one GEMM against the [n, K·d] table of z_i ⊗ q_i
        addressed = (self._address(table)[:, :, None] * table[:, None, :]).flatten(1)
        return p @ table.T + self.alpha * (memory.values.flatten(1) @ addressed.T)

    def _read_scores_per_user(self, memory: torch.Tensor) -> torch.Tensor:
        """Σ_k z_ik m_kᵀq_i for every item, memory [B, K, d] → [B, n], for a few users (a
        server's request): w = M Qᵀ per chunk of items, never the [n, K·d] table, whose build
        costs more than a few users' scores."""
        table, out = self.item_embedding.weight, memory.new_empty(len(memory), self.n_items)
        z = self._item_addresses()                                                 # [n, K]
        for items in chunked_items(self.n_items, len(memory), 2 * memory.shape[1]):
            out[:, items] = (z[items].T * (memory @ table[items].T)).sum(1)        # [B, K, c] → [B, c]
        return out

    def _item_addresses(self) -> torch.Tensor:
        """z_i of every item [n, K]. It depends on the weights alone, so outside autograd it is
        kept until they change (a tensor's version counts its in-place updates: optimizer
        steps, ``load_state_dict``): a server pays for it once, not per request."""
        if torch.is_grad_enabled():
            return self._address(self.item_embedding.weight)
        key = (self.item_embedding.weight._version, self.feature_keys._version,
               self.item_embedding.weight.data_ptr(), self.feature_keys.data_ptr(), self.beta)
        if self._addresses is None or self._addresses[0] != key:
            self._addresses = (key, self._address(self.item_embedding.weight))
        return self._addresses[1]

    def prefix_scores(self, users, history, mask, candidates) -> torch.Tensor:
        q_seq = self.item_embedding(history)
        states = self._write_all(users, q_seq, mask)
        q = self.item_embedding(candidates)                                        # [B, L, C, d]
        return self._merge_score(users, q, self._read_score(states.values, q, q_seq)[0])

    # -- explanations -------------------------------------------------------------------------
    @torch.no_grad()
    def explain_state(self, state: FeatureMemory, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """The feature slots with the attention each got when scoring the item."""
        z = self._read_score(state.values, self.item_embedding(items)[None], state.last)[1][0]
        slots = torch.arange(z.shape[1], device=z.device)
        return [ranked_entries("slot", slots, row) for row in z]


__all__ = ["RUMItem", "RUMFeature", "RecentItems"]
