"""KSR: a GRU over the item sequence plus a knowledge-enhanced key-value memory.

Huang, Zhao, Dou, Wen, Chang. "Improving Sequential Recommendation with Knowledge-Enhanced
Memory Networks." SIGIR 2018. Official code: ``RUCDM/KSR`` (Theano, ``src/KVMN4rec.py``); the
spec ``rum-ksr-stamp-nmrn.md`` §2 compares paper, official code and RecBole's port.

Per user, a value memory V^u with one slot per item→attribute relation a (genre, director,
actor, …, :meth:`memrec.data.knowledge.KnowledgeGraph.item_relations`), keyed by the relation's
TransE vector k_a = r_a (−r_a for a relation the KG stores attribute → item, read as r_a⁻¹).
Per event i_t:

    h_t = GRU(q_{i_1}, …, q_{i_t})                                 # sequential preference (eq. 1)
    e_a^i = e_i + r_a                    (paper)                   # the item's attribute-a value (eq. 8)
    e_a^i = tanh(W_e e_i + b_e) + r_a    (official code)
    z_a = σ(⟨v_a, e_a^i⟩),  v_a ← (1 − z_a)·v_a + z_a·e_a^i        # gated write (eqs. 9–10) → gated_write
    w_a = softmax_a(γ · h̃_tᵀ k_a),  h̃_t = W h_t         (paper)   # read (eqs. 6–7) → attention_read
    w_a = softmax_a(tanh(W h_t + b)ᵀ k_a)               (official: no γ)
    m_t = Σ_a w_a v_a
    p_u = MLP([h_t ; m_t]),  q̃_i = MLP([q_i ; e_i]),  ŷ_ui = p_uᵀ q̃_i      # eqs. (11)–(12)

q_i are item vectors pre-trained with BPR (the official code uses qmf's BPR and freezes them)
and e_i, r_a TransE vectors (OpenKE in the paper; here :mod:`memrec.knowledge_runs`), frozen by
default (``freeze_items``, ``freeze_kg``). Both are loaded by the KSR pretraining recipe
(:func:`memrec.training.pretrain.pretrain_ksr`, run when ``train.pretrain_epochs > 0``):
BPR-MF for ``pretrain_epochs`` epochs, and the TransE run named by ``transe``
(``memrec train ksr --data KG_FOLDER`` trains one into the run folder when none is named,
:mod:`memrec.ksr_knowledge`).

Knowledge is never optional by accident: with ``kg = "transe"`` (the default) the model refuses
to score until TransE vectors are loaded. ``kg = "none"`` is the ablation *without* a knowledge
graph: ``relations`` learned memory slots with learned keys and entity vectors (RecBole's
default when it has no pre-trained vectors), every item counting as linked.

Variants (``variant=``):

* ``"official"`` (default) — the authors' code: write *before* read at each step (the read at
  t sees item i_t), the learned tanh projection of e_i in the write, a tanh query projection
  and no γ; user side tanh(W_y tanh(W_u [h; m] + b_u) + b_y) (two tanh layers), item side
  tanh(W_Y [q; e] + b_Y).
* ``"paper"`` — the paper's form as the issue describes it: read *before* write (the read at t
  sees items up to i_{t−1}), e_a = e_i + r_a, h̃ = W h, softmax with γ; one tanh layer on each
  side (the paper says "MLP"; its depth is not given: a reconstruction).

Unlinked items (no TransE entity): e_i = 0 on the item side, and they **do not write** the
memory (their "attribute values" would be r_a alone, the same for every unlinked item).

Training (:meth:`KSR.prefix_scores`): every position of a padded sequence predicts its next
item in one causal pass — one GRU pass for all h_t, one :func:`~memrec.memory.write.gated_unroll`
for all memory states (the gated write is a recurrence with a state-dependent gate, so it runs
as a loop over time, spec §0.3, but one fused step each way with a hand-written backward), one
batched read. Encoding a history for scoring (:meth:`KSR.encode`) keeps the final memory only
(:func:`~memrec.memory.write.gated_final`: one pass over time touching only the rows with an
event). Streaming (:meth:`init_state` / :meth:`update` / :meth:`score_state`) gives the same
scores as the batch path (tested).

Deviations from the paper / official code (see ``docs/models/ksr.md``):

* negatives: the trainer's sampler draws them per target (``sampler = "popularity"``, outside
  the user's training items); the official code draws ``n_sample`` per user once per epoch and
  reuses them at every step;
* user sequences padded into mini-batches (all prefixes in one pass) instead of GRU4Rec's
  session-parallel mini-batches; same gradients per sequence, no state carried across users;
* dropout on the GRU output h_t (the official code's hidden dropout), not inside the GRU;
* Adam (the user-sequence default) instead of the official Adagrad with momentum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..memory.read import attention_read
from ..memory.state import MemoryState, TensorState
from ..memory.write import gated_final, gated_unroll, gated_write
from .base import Query
from .capabilities import (AnonymousScorer, AttentionTracer, HistoryScorer, StateExplainer,
                           MemoryEntry, NextItemPairwise, StatefulScorer, ranked_entries)

VARIANTS = ("official", "paper")
#: where the memory's knowledge comes from: a KG's TransE vectors, or None (the ablation; the
#: string "none" in a config file or --set model.kg=none)
KNOWLEDGE = ("transe", None)
NO_KNOWLEDGE = ("KSR has no knowledge-graph vectors: train it with memrec train ksr --data KG_FOLDER "
                "(which trains TransE on that folder's graph), name a TransE run with model.transe "
                "(with train.pretrain_epochs > 0), or set model.kg = \"none\" for KSR without "
                "knowledge (the ablation)")


@dataclass(frozen=True)
class KSRState(TensorState):
    """KSR's state: the GRU's hidden [B, H], the relation memory values [B, R, d_k] and the
    paper variant's not-yet-written last item pending long [B] (-1: none; "official" writes at
    once and keeps it -1)."""

    hidden: torch.Tensor
    values: torch.Tensor
    pending: torch.Tensor
    memory_field = "values"


class KSR(StateExplainer, HistoryScorer, AnonymousScorer, NextItemPairwise,
          AttentionTracer):
    """KSR scorer.

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` unused: scores depend on the sequence only.
    variant : "official" | "paper"
        See the module docstring.
    dim : int
        d_q, the (BPR) item embedding size.
    hidden : int
        H, the GRU hidden size (official: 256).
    kg_dim : int
        d_k, the TransE dimension (memory slots, keys and entity vectors).
    out_dim : int
        Size of p_u and q̃_i (official: 100).
    gamma : float
        γ of the paper variant's read softmax (RecBole's default 10; unused by "official").
    dropout : float
        Dropout on h_t (training only).
    kg : "transe" | None
        ``"transe"``: the memory slots are the item relations of a knowledge graph, with TransE
        vectors (``transe``, or trained by ``memrec train ksr --data KG_FOLDER``). None
        (``kg = "none"`` in a config): the ablation without a knowledge graph (``relations``
        learned slots).
    relations : int
        Memory slots of the ablation ``kg = "none"`` (learned keys); with a knowledge graph its
        item relations replace it.
    transe : str
        A TransE run folder (``memrec train transe``); "" = the one ``memrec train ksr`` trains.
    freeze_items : bool
        Keep the pre-trained BPR item vectors fixed (official code).
    freeze_kg : bool
        Keep the TransE entity and relation vectors fixed (official code). Ignored by
        ``kg = "none"`` (learned vectors are trained).

    Shapes
    ------
    state: :class:`KSRState` (h [B, H], memory values [B, R, d_k], pending item long [B])
    prefix_scores: history [B, L], candidates [B, L, C] → [B, L, C]
    """

    explains = "relation"
    state_type = KSRState
    #: sizes that depend on the TransE graph: resized when a checkpoint is loaded
    data_buffers = ("relation_names",)

    def __init__(self, n_users: int, n_items: int, *, variant: str = "official", dim: int = 64,
                 hidden: int = 256, kg_dim: int = 64, out_dim: int = 100, gamma: float = 10.0,
                 dropout: float = 0.2, kg: str | None = "transe", relations: int = 8, transe: str = "",
                 freeze_items: bool = True, freeze_kg: bool = True):
        super().__init__(n_users, n_items)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        kg = None if kg == "none" else kg            # Python callers may spell the ablation either way
        if kg not in KNOWLEDGE:
            raise ValueError(f"kg must be \"transe\" or \"none\" (the ablation without a knowledge "
                             f"graph), not {kg!r}")
        if kg is None and transe:
            raise ValueError(f"kg = \"none\" trains KSR without a knowledge graph, but transe names "
                             f"one ({transe}); drop one of the two")
        if relations < 1:
            raise ValueError(f"relations must be at least 1, got {relations}")
        self.variant, self.gamma, self.kg, self.transe = variant, gamma, kg, transe
        self.freeze_items, self.freeze_kg = freeze_items, freeze_kg
        self.item_embedding = nn.Embedding(n_items, dim)                 # q_i (BPR, pre-trained)
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        self.item_embedding.weight.requires_grad_(not freeze_items)
        self.entity = nn.Parameter(torch.randn(n_items, kg_dim) * 0.1)   # e_i, row per item
        self.relation_keys = nn.Parameter(torch.randn(relations, kg_dim) * 0.1)   # k_a = r_a
        self.register_buffer("linked", torch.ones(n_items, dtype=torch.bool))
        self.register_buffer("knowledge_loaded", torch.tensor(False))
        self.register_buffer("relation_names", torch.zeros(0, dtype=torch.uint8))
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        official = variant == "official"
        self.write_projection = nn.Linear(kg_dim, kg_dim) if official else None   # W_e, b_e
        self.query = nn.Linear(hidden, kg_dim, bias=official)                     # h̃ = W h (+ b, tanh)
        if official:
            self.user_mlp = nn.Sequential(nn.Linear(hidden + kg_dim, hidden), nn.Tanh(),
                                          nn.Linear(hidden, out_dim), nn.Tanh())
        else:
            self.user_mlp = nn.Sequential(nn.Linear(hidden + kg_dim, out_dim), nn.Tanh())
        self.item_mlp = nn.Sequential(nn.Linear(dim + kg_dim, out_dim), nn.Tanh())

    # -- knowledge ----------------------------------------------------------------------------
    def load_knowledge(self, entity: torch.Tensor, linked: torch.Tensor, relations: torch.Tensor,
                       names: list[str]) -> None:
        """Install TransE vectors: entity [n_items, d_k] (zero rows where unlinked), linked
        bool [n_items], relation keys [R, d_k] and their names."""
        if entity.shape != self.entity.shape:
            raise ValueError(f"entity vectors must be {tuple(self.entity.shape)}, got {tuple(entity.shape)}")
        if relations.dim() != 2 or relations.shape[1] != self.entity.shape[1] or len(relations) < 1:
            raise ValueError(f"relation vectors must be [R ≥ 1, {self.entity.shape[1]}], got {tuple(relations.shape)}")
        trainable = not self.freeze_kg
        self.entity = nn.Parameter(entity.clone().float(), requires_grad=trainable)
        self.relation_keys = nn.Parameter(relations.clone().float(), requires_grad=trainable)
        self.linked = linked.clone().bool()
        self.relation_names = torch.tensor(list("\n".join(names).encode()), dtype=torch.uint8)
        self.knowledge_loaded = torch.tensor(True)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        relations = state_dict.get("relation_keys")
        if relations is not None and relations.shape != self.relation_keys.shape:
            trainable = self.relation_keys.requires_grad
            self.relation_keys = nn.Parameter(torch.empty_like(relations), requires_grad=trainable)
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if bool(self.knowledge_loaded) and self.freeze_kg:
            # TransE vectors are frozen once loaded (load_knowledge); a model restored from a
            # checkpoint (resume, load) must freeze them too, or its optimizer's parameter
            # groups differ from the saved ones
            self.entity.requires_grad_(False)
            self.relation_keys.requires_grad_(False)
        return result

    def entry_labels(self) -> list[str]:
        """Names of the memory slots (relation names, ``r⁻¹`` for one read backwards; "learned
        slot a" in the ablation ``kg = "none"``)."""
        if len(self.relation_names):
            return bytes(self.relation_names.tolist()).decode().split("\n")
        return [f"learned slot {a}" for a in range(len(self.relation_keys))]

    def check_knowledge_source(self) -> None:
        """Refuse to train without knowledge unless ``kg = "none"`` says so (before any work)."""
        if self.kg == "transe" and not self.transe:
            raise ConfigError(NO_KNOWLEDGE)

    def _require_knowledge(self) -> None:
        if self.kg != "transe" or bool(self.knowledge_loaded):
            return
        if self.transe:
            raise ConfigError("model.transe is set but its vectors were never loaded: KSR loads "
                              "them in its pretraining step, so set train.pretrain_epochs > 0")
        raise ConfigError(NO_KNOWLEDGE)

    # -- the pieces ---------------------------------------------------------------------------
    def _item_write(self, items: torch.Tensor) -> torch.Tensor:
        """The item's part of the write update, e_i (paper) or tanh(W_e e_i + b_e) (official):
        items long [...] → [..., d_k]."""
        e = self.entity[items]
        if self.write_projection is not None:
            e = torch.tanh(self.write_projection(e))                     # official: tanh(W_e e + b_e)
        return e

    def _write_update(self, items: torch.Tensor) -> torch.Tensor:
        """e_a^i for every slot: items long [...] → [..., R, d_k]."""
        return self._item_write(items).unsqueeze(-2) + self.relation_keys   # e_a^i = e + r_a

    def _write(self, memory: MemoryState, items: torch.Tensor) -> MemoryState:
        """One gated write per row (unlinked items and padding rows: no write)."""
        return gated_write(memory, self._write_update(items))            # z = σ(⟨v_a, e_a⟩), eq. (9–10)

    def _query(self, h: torch.Tensor) -> torch.Tensor:
        """The read query in key space: h [..., H] → [..., d_k]."""
        if self.variant == "official":
            return torch.tanh(self.query(h))                             # tanh(W h + b), no γ (official)
        return self.query(h)                                             # h̃ = W h, eq. (6)

    def _read(self, h: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """m = Σ_a w_a v_a with w = softmax_a(γ · queryᵀ k_a): h [..., H], values [..., R, d_k]
        → (m [..., d_k], w [..., R]). One :func:`attention_read` over every position at once."""
        lead, (R, d) = h.shape[:-1], values.shape[-2:]
        memory = self._memory(values.reshape(-1, R, d))
        # softmax(γ·s) = softmax(s/τ) with τ = 1/γ; γ = 0 is the uniform read (τ = ∞)
        temperature = 1.0 if self.variant == "official" else (1.0 / self.gamma if self.gamma else float("inf"))
        m, w = attention_read(self._query(h).reshape(-1, d), memory, temperature=temperature)  # eq. (7)
        return m.reshape(*lead, d), w.reshape(*lead, R)

    def _user_vectors(self, h: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p_u = MLP([h ; m]) from h [..., H] and the memory values [..., R, d_k]
        → ([..., out], read weights [..., R])."""
        m, w = self._read(h, values)
        return self.user_mlp(torch.cat([self.dropout(h), m], dim=-1)), w   # eq. (11)

    def _item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """q̃_i = MLP([q_i ; e_i]) (e_i = 0 when unlinked): items [...] or all → [..., out]."""
        q = self.item_embedding.weight if items is None else self.item_embedding(items)
        e = self.entity if items is None else self.entity[items]
        linked = self.linked if items is None else self.linked[items]
        return self.item_mlp(torch.cat([q, e * linked.unsqueeze(-1)], dim=-1))

    def _empty_memory(self, batch: int) -> MemoryState:
        R, d = self.relation_keys.shape
        return self._memory(self.relation_keys.new_zeros(batch, R, d))   # memory starts at 0 (both codes)

    # -- streaming ----------------------------------------------------------------------------
    def init_state(self, users: torch.Tensor) -> KSRState:
        B = len(users)
        h = self.item_embedding.weight.new_zeros(B, self.gru.hidden_size)
        return KSRState(h, self._empty_memory(B).values,
                        torch.full((B,), -1, dtype=torch.long, device=h.device))

    def update(self, state: KSRState, items: torch.Tensor) -> KSRState:
        memory = self._memory(state.values)
        _, h = self.gru(self.item_embedding(items)[:, None, :], state.hidden[None].contiguous())
        to_write = state.pending if self.variant == "paper" else items
        writes = (to_write >= 0) & self.linked[to_write.clamp_min(0)]
        memory = self._write(memory, to_write.clamp_min(0)).where(writes, memory)
        pending = items if self.variant == "paper" else state.pending
        return KSRState(h[0], memory.values, pending)

    def _memory(self, values: torch.Tensor) -> MemoryState:
        """The relation memory with values [B, R, d_k], keyed by the relation vectors."""
        return MemoryState(values, torch.ones(values.shape[:2], dtype=torch.bool, device=values.device),
                           keys=self.relation_keys.expand(*values.shape))

    def encode(self, users, history, mask) -> KSRState:
        state = self.init_state(users)
        length = mask.sum(1)
        rows = torch.nonzero(length > 0).flatten()
        if len(rows) == 0:
            return state
        h0, memory, pending = state.hidden, self._memory(state.values), state.pending
        packed = nn.utils.rnn.pack_padded_sequence(self.item_embedding(history[rows]), length[rows].cpu(),
                                                   batch_first=True, enforce_sorted=False)
        _, h_rows = self.gru(packed)
        h = h0.index_copy(0, rows, h_rows[0])
        writes = mask & self.linked[history]
        last = history.gather(1, (length - 1).clamp_min(0)[:, None])[:, 0]
        if self.variant == "paper":                                      # the last item waits
            writes = writes & (torch.arange(history.shape[1], device=mask.device) < (length - 1)[:, None])
            pending = torch.where(length > 0, last, pending)
        # final memory only, the [B, L, R, d_k] updates formed one step at a time (eq. 8–10)
        memory = gated_final(memory, self._item_write(history), writes, slot_offset=self.relation_keys)
        return KSRState(h, memory.values, pending)

    def score_state(self, state: KSRState, users, items=None) -> torch.Tensor:
        self._require_knowledge()
        p, _ = self._user_vectors(state.hidden, state.values)             # [B, out]
        if items is None:
            return p @ self._item_vectors().T
        return (p[:, None, :] * self._item_vectors(items)).sum(-1)

    # -- training -----------------------------------------------------------------------------
    def _all_states(self, history, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t and the memory each read at t sees, for every position: ([B, L, H], [B, L, R, d_k])."""
        h, _ = self.gru(self.item_embedding(history))                    # one causal pass
        writes = mask & self.linked[history]
        initial = self._empty_memory(len(history))
        states = gated_unroll(initial, self._write_update(history), writes)   # every V_t, one fused scan
        if self.variant == "paper":                                      # read before write
            states = states.before(initial)
        return h, states.values

    def prefix_scores(self, users, history, mask, candidates) -> torch.Tensor:
        self._require_knowledge()
        h, values = self._all_states(history, mask)
        p, _ = self._user_vectors(h, values)                             # [B, L, out]
        return (p.unsqueeze(-2) * self._item_vectors(candidates)).sum(-1)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    # -- explanations -------------------------------------------------------------------------
    @torch.no_grad()
    def attention_trace(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The read attention over relations after every event of one history (B = 1):
        [n_events, R] (the survey's "album, then singer" picture)."""
        h, values = self._all_states(history, mask)
        return self._read(h, values)[1][0][mask[0]]

    @torch.no_grad()
    def explain_state(self, state: KSRState, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """The attention over relations (memory slots) of the read that scores the items. The
        read depends on h_t only, so every item gets the same attention."""
        w = self._read(state.hidden, state.values)[1][0]
        ranked = ranked_entries("relation", torch.arange(len(w), device=w.device), w)
        return [ranked for _ in range(len(items))]


__all__ = ["KSR", "VARIANTS", "KNOWLEDGE"]
