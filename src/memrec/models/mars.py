"""MARS: Memory Attention-aware Recommender System — a labelled reconstruction.

Zheng, Lu, He, Xie, Noroozi, Huang, Yu. "MARS: Memory Attention-Aware Recommender System."
arXiv 1805.07037 (2018); IEEE DSAA 2019. **No public code, data or hyper-parameters exist and the
paper's body could not be read here** (spec ``../shared/specs/cmn-mars-dmn.md`` §2): what is
confirmed is the abstract — adaptive user representations produced by a memory component read
with item-level attention, a deep model trained end to end, Recall/MAP evaluation — and the
survey's summary (item memory queried by the item embedding, read by attention, written by
back-propagation, inner-product similarity). Everything below is the spec's reconstruction; the
choices it leaves open are constructor options.

The idea: a user is not one fixed vector. To score user u on item i, read a memory of the items u
interacted with, attending to those most relevant to i; the read is u's representation *for i*.
This is CMN transposed: CMN reads an item's users, MARS a user's items.

Equation map (the spec's §2(a) numbering; shapes for one (u, i) pair, H_u = u's memory):

* memory   K = A[H_u], V = B[H_u]                          (a.1: key and value item tables)
* address  s_j = ⟨q_i, k_j⟩  or  wᵀtanh(W_q q_i + W_k k_j + b)   (a.2: ``attention``)
* weights  p = softmax_{j ∈ H_u, j ≠ i}(s)                  (a.2, with leave-self-out, §2(c))
* read     x_ui = Σ_j p_j v_j  (+ p_u)                       (a.3: adaptive user vector)
* deep     h_ui = g(x_ui), g an MLP                          (a.3)
* score    r̂_ui = ⟨h_ui, q_i⟩                                (a.4: inner product)
* loss     BPR with uniformly sampled negatives              (§2(c); ``train.loss = "bpr"``)

Memory vocabulary: the slots are rows of learned item tables (written by back-propagation
only); each user's memory is a padded :class:`~memrec.memory.state.MemoryState`-style block
(items [U, N] with a mask, taken from the training data by :meth:`MARS.prepare`), read with
:func:`~memrec.memory.read.masked_softmax` and, for ``attention="additive"``,
:class:`~memrec.memory.read.AdditiveScore`. Every candidate is its own query, so a batch of
candidates reads the memory as one [B, C, L] matrix product (:func:`candidate_read`).

Deviations from the paper (all reconstructions; see ``docs/models/mars.md``)
--------------------------------------------------------------------------------
* The architecture itself is the spec's reading of the abstract, not the paper's equations.
* Leave-self-out (spec §2(c)): when scoring (u, i), every copy of i is masked out of H_u, in
  training and at test time alike, so the attention cannot find the target by looking it up; a
  user whose memory is only i reads the zero vector. ``leave_self_out=False`` is the ablation.
* History cap: the ``max_history`` most recent training items (spec default 50–200); the paper's
  cap, if any, is unknown.
* Memory contents: the training interactions only (``prepare(train)``), as CMN's neighbourhoods;
  items in the validation part are not in the memory at test time unless the run refits on
  train + valid (``train.refit``).
* Serving: the state of a user is the memory H_u (:class:`~memrec.memory.state.ItemWindow`,
  starting from the training memory); a new event appends to it, dropping the oldest beyond
  ``max_history``.
* g is ``mlp_layers`` Linear layers with ReLU between them (none after the last, so h can take
  any sign before the inner product); 0 layers = no MLP.

No copy read (issue 22's ``model.repeat``), by decision: MARS's memory holds items, but (1) the
scored item is masked out of the memory it reads (leave-self-out), so the copy mass of the item
being scored is always 0 — the copy read would be inert; and leave-self-out exists precisely to
keep the attention from learning "find the target in the memory", which is what a copy does: every
training positive is in its own user's memory, no held-out item is; (2) the memory is the user's
training items, which the full-ranking protocol and ``recommend`` exclude; (3) every candidate
reads its own attention, so there is no one distribution over items to copy from. See
``docs/models/mars.md``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.interactions import Interactions
from ..memory.read import AdditiveScore, candidate_read
from ..memory.state import ItemWindow
from .base import Query
from .capabilities import MemoryEntry, StateExplainer, ranked_entries
from .chunks import chunked_items

ATTENTIONS = ("dot", "additive")


class MARS(StateExplainer):
    """MARS scorer (reconstruction): attention over the user's own items, queried by the target.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Embedding size d of the query, key and value item tables (and of p_u).
    max_history : int
        N, the most recent training items kept in each user's memory.
    attention : "dot" | "additive"
        Item-level attention score: ⟨q_i, k_j⟩ or wᵀtanh(W_q q_i + W_k k_j + b).
    attention_hidden : int
        Hidden size of the additive attention (0: d).
    user_embedding : bool
        Add a static user embedding p_u to the adaptive vector before the MLP.
    mlp_layers : int
        Depth of g (0: identity).
    tie_key_value : bool
        One table for memory keys and values (A = B).
    leave_self_out : bool
        Mask the scored item out of the memory it reads (the ablation turns it off).
    init_std : float
        Normal initialisation of the embedding tables.

    Shapes
    ------
    score_items: users [B], items [B, C] → [B, C]; score_all: users [B] → [B, n_items]

    Example
    -------
    >>> model = MARS(n_users=4, n_items=9, dim=8)
    >>> model.prepare(train)                                     # doctest: +SKIP
    >>> model.score_items(Query.for_users([0]), torch.tensor([[1, 2]])).shape  # doctest: +SKIP
    torch.Size([1, 2])
    """

    data_buffers = ("memory_items", "memory_mask")
    explains = "item"   # explain() names the user's remembered items
    state_type = ItemWindow

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, max_history: int = 50,
                 attention: str = "dot", attention_hidden: int = 0, user_embedding: bool = True,
                 mlp_layers: int = 2, tie_key_value: bool = False, leave_self_out: bool = True,
                 init_std: float = 0.1):
        super().__init__(n_users, n_items)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, not {attention!r}")
        if max_history < 1:
            raise ValueError(f"max_history must be at least 1, got {max_history}")
        if mlp_layers < 0:
            raise ValueError(f"mlp_layers must be 0 or more, got {mlp_layers}")
        self.max_history, self.leave_self_out = max_history, leave_self_out
        self.item_query = nn.Embedding(n_items, dim)                     # q_i: the target item
        self.item_key = nn.Embedding(n_items, dim)                       # A: memory keys
        self.item_value = self.item_key if tie_key_value else nn.Embedding(n_items, dim)  # B
        self.user = nn.Embedding(n_users, dim) if user_embedding else None   # p_u
        for table in {id(t): t for t in (self.item_query, self.item_key, self.item_value,
                                         self.user) if t is not None}.values():
            nn.init.normal_(table.weight, std=init_std)
        self.scorer = (AdditiveScore(dim, dim, attention_hidden or dim) if attention == "additive"
                       else None)
        layers: list[nn.Module] = []
        for k in range(mlp_layers):
            layers += [nn.ReLU()] if k else []
            layers.append(nn.Linear(dim, dim))
        self.deep = nn.Sequential(*layers)                               # g; empty = identity
        # each user's memory: the most recent N training items, oldest first, right-padded
        self.register_buffer("memory_items", torch.zeros(n_users, 0, dtype=torch.long))
        self.register_buffer("memory_mask", torch.zeros(n_users, 0, dtype=torch.bool))

    # -- data ---------------------------------------------------------------------------------
    def prepare(self, train: Interactions) -> None:
        """H_u = the ``max_history`` most recent training items of each user (time order)."""
        indptr, items = train.sequences()
        users = torch.arange(self.n_users).numpy()
        memory = Query.from_csr(users, users, indptr, items, self.max_history)
        self.memory_items, self.memory_mask = memory.history, memory.mask

    # -- the state: each user's memory H_u ------------------------------------------------------
    def init_state(self, users: torch.Tensor) -> ItemWindow:
        """The users' memories after training (items [B, L], trimmed to the longest)."""
        return ItemWindow(self.memory_items[users], self.memory_mask[users]).trimmed()

    def update(self, state: ItemWindow, items: torch.Tensor) -> ItemWindow:
        return state.append(items, self.max_history)

    # -- scoring ------------------------------------------------------------------------------
    def _read(self, users: torch.Tensor, items: torch.Tensor, state: ItemWindow
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adaptive user vectors for pairs (users[b], items[b, c]) from the memories ``state``.

        → (x [B, C, d] (p_u included), weights [B, C, L])."""
        memory, mask = state.items, state.mask
        slot_mask = mask[:, None, :].expand(-1, items.shape[1], -1)
        if self.leave_self_out:                                                   # §2(c)
            slot_mask = slot_mask & (memory[:, None, :] != items[:, :, None])
        read, weights = candidate_read(self.item_query(items), self.item_key(memory),
                                       self.item_value(memory), slot_mask, self.scorer)  # a.1–a.3
        if self.user is not None:
            read = read + self.user(users)[:, None, :]                            # x_ui + p_u
        return read, weights

    def _pair_scores(self, users: torch.Tensor, items: torch.Tensor, state: ItemWindow) -> torch.Tensor:
        x, _ = self._read(users, items, state)
        return (self.deep(x) * self.item_query(items)).sum(-1)                    # a.4: ⟨g(x), q_i⟩

    def score_state(self, state: ItemWindow, users: torch.Tensor, items=None,
                    users_per_block: int = 64) -> torch.Tensor:
        """Candidates items [B, C], or every item: blocks of users × chunks of items — per chunk
        one [b, c, L] score product, one [b, c, L] × [b, L, d] read and the MLP on [b, c, d];
        no loop over items or users inside a block."""
        if items is not None:
            return self._pair_scores(users, items, state)
        out = torch.empty(len(users), self.n_items, device=users.device)
        width = max(1, state.items.shape[1])
        per_item = width * (self.scorer.out.in_features if self.scorer is not None else 2) \
            + 4 * self.item_query.embedding_dim
        for rows in torch.arange(len(users), device=users.device).split(users_per_block):
            block = state.index(rows).trimmed()
            for chunk in chunked_items(self.n_items, len(rows), per_item):
                items = torch.arange(chunk.start, chunk.stop, device=users.device).expand(len(rows), -1)
                out[rows, chunk] = self._pair_scores(users[rows], items, block)
        return out

    # -- explanations -------------------------------------------------------------------------
    @torch.no_grad()
    def explain_state(self, state: ItemWindow, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """For each item, the user's remembered items it attended to with their weights,
        strongest first (the item itself never appears: leave-self-out)."""
        _, weights = self._read(users, items[None], state)
        memory = state.items[0]
        return [ranked_entries("item", memory[row > 0], row[row > 0]) for row in weights[0]]


__all__ = ["MARS"]
