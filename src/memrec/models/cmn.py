"""CMN: Collaborative Memory Network.

Ebesu, Shen, Fang. "Collaborative Memory Network for Recommendation Systems." SIGIR 2018.
Built from the authors' code (tebesu/CollaborativeMemoryNetwork, TF1 + Sonnet), as read in
``../shared/specs/cmn-mars-dmn.md`` §1.

The idea: to score user u on item i, read a memory of the *other users who liked i* (i's
neighbourhood N(i)), attending to those most similar to u. Each user has a key vector in the
user memory M and a value vector in the external memory C; the item has an embedding in E. The
read is repeated over several hops, the query refined between hops; the last read is combined
with the latent-factor interaction m_u ⊙ e_i by a small output network.

Equation map (paper numbering; shapes for one (u, i) pair):

* query   z⁰ = m_u + e_i                         (eq. 2: q_uiv = m_u·m_v + e_i·m_v)
* address p_v = softmax_{v ∈ N(i)}(z^{h-1}·m_v)   (eq. 3)
* read    o^h = Σ_v p_v c_v                      (eq. 4)
* hop     z^h = ReLU(W^h z^{h-1} + o^h + b^h)    (eq. 6; the code applies it *between* reads)
* output  r̂_ui = vᵀ ReLU(U(m_u ⊙ e_i) + W o^H + b)   (eq. 5; U and W are one Linear over the concat)

Memory vocabulary: M, C, E are learned slots (written by back-propagation only); the read is
:func:`memrec.memory.read.ragged_attention_read` over each item's neighbourhood (or the padded
:func:`~memrec.memory.read.attention_read`, option ``attention="padded"``), repeated by hops.

Deviations from the paper (and from the authors' code)
------------------------------------------------------
* Following the code, not the paper: the hop map sits between reads and the output layer takes
  the last read o^H (not z^H); the hop-map bias starts at 1.0 so the ReLU fires.
* Neighbourhoods include the query user when (u, i) is a training pair, as in the code (the
  paper does not discuss it); ``exclude_self=True`` removes u from N(i) everywhere (ablation).
* Items with no training user: the authors' evaluation falls back to the neighbourhood [u];
  that is our default (``empty_neighbourhood="self"``); ``"zero"`` reads the zero vector.
* Batches are (positive, N negatives) groups sharing one positive read (the code draws
  independent triples); the BPR gradient per triple is the same.
* The optimizer: ``train.optimizer = "tf_rmsprop"`` (the shipped config) is TF1's RMSProp
  (ones-initialised mean square, ε inside the root). The embeddings get *dense* gradients, as
  the authors' per-variable ``tf.clip_by_norm`` produced before TF PR #22765 (Oct 2018) made it
  keep ``IndexedSlices``; ``sparse_gradients=True`` gives the later, lazy-row behaviour (it
  collapses with L2 0.1, see ``docs/models/cmn.md``). PyTorch's ``rmsprop`` is the registry
  default for other uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.interactions import Interactions
from ..memory.read import (RaggedMemory, SharedLayout, attention_read, csr_segments,
                           ragged_attention_read, ragged_to_padded, shared_layout_read,
                           shared_layout_scores, shared_layout_softmax)
from .base import Model, Query


class CMN(Model):
    """Collaborative Memory Network scorer.

    Parameters
    ----------
    n_users, n_items : int
    dim : int
        Embedding size d (50 in the paper).
    hops : int
        Number of memory reads H (CMN-1 … CMN-4).
    exclude_self : bool
        Remove the query user from the item's neighbourhood (ablation; the code keeps u).
    empty_neighbourhood : "self" | "zero"
        What an item without training users reads: the query user alone (the code's
        evaluation fallback) or nothing.
    attention : "ragged" | "padded"
        Segment-softmax over concatenated neighbourhoods (cost ∝ Σ sizes) or padded batches
        (cost ∝ batch × largest neighbourhood). Same numbers.
    init_std : float
        Normal initialisation of the memories (the code: truncated normal, σ = 0.01).
    sparse_gradients : bool
        Row-sparse gradients for M, C, E, so a lazy optimizer (``tf_rmsprop``) updates only the
        rows a batch looked up, as later TF1 releases do for the authors' code (off: every row is
        updated each step, as TF did when the code was written).
    score_chunk_slots : int
        Upper bound on neighbourhood slots per chunk in ``score_all`` (memory knob).

    Shapes
    ------
    score_items: users [B], items [B, C] → [B, C]; score_all: users [B] → [B, n_items]

    Example
    -------
    >>> model = CMN(n_users=4, n_items=3, dim=8, hops=2)
    >>> model.prepare(train)                                     # doctest: +SKIP
    >>> model.score_items(Query.for_users([0]), torch.tensor([[1, 2]])).shape  # doctest: +SKIP
    torch.Size([1, 2])
    """

    data_buffers = ("neighbour_users",)
    explains = "users"  # explain() names neighbour users

    def __init__(self, n_users: int, n_items: int, *, dim: int = 50, hops: int = 2,
                 exclude_self: bool = False, empty_neighbourhood: str = "self",
                 attention: str = "ragged", init_std: float = 0.01,
                 sparse_gradients: bool = False, score_chunk_slots: int = 2_000_000):
        super().__init__(n_users, n_items)
        if hops < 1:
            raise ValueError(f"hops must be at least 1, got {hops}")
        if empty_neighbourhood not in ("self", "zero"):
            raise ValueError("empty_neighbourhood must be 'self' or 'zero'")
        if attention not in ("ragged", "padded"):
            raise ValueError("attention must be 'ragged' or 'padded'")
        self.hops, self.exclude_self = hops, exclude_self
        self.empty_neighbourhood, self.attention = empty_neighbourhood, attention
        self.score_chunk_slots = score_chunk_slots
        # sparse gradients: only looked-up rows get an update (TF's IndexedSlices; needs an
        # optimizer that accepts them, e.g. train.optimizer = "tf_rmsprop")
        self.user_memory = nn.Embedding(n_users, dim, sparse=sparse_gradients)  # M: keys; m_u
        self.user_output = nn.Embedding(n_users, dim, sparse=sparse_gradients)  # C: values
        self.item_memory = nn.Embedding(n_items, dim, sparse=sparse_gradients)  # E
        for table in (self.user_memory, self.user_output, self.item_memory):
            nn.init.trunc_normal_(table.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        self.hop_maps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(hops - 1))
        for layer in self.hop_maps:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.constant_(layer.bias, 1.0)  # so the ReLU fires at the start (authors' code)
        self.output = nn.Linear(2 * dim, dim)               # [U W] over concat(m_u⊙e_i, o^H)
        nn.init.kaiming_normal_(self.output.weight, nonlinearity="relu")
        nn.init.zeros_(self.output.bias)
        self.out_vector = nn.Linear(dim, 1, bias=False)      # v
        nn.init.xavier_uniform_(self.out_vector.weight)
        # item → users CSR of the training data (users sorted within an item)
        self.register_buffer("neighbour_indptr", torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("neighbour_users", torch.zeros(0, dtype=torch.long))

    # -- data ---------------------------------------------------------------------------------
    def prepare(self, train: Interactions) -> None:
        """N(i) = every training user of item i (no truncation, as in the code)."""
        item_users = train.item_users()
        self.neighbour_indptr = torch.as_tensor(item_users.indptr, dtype=torch.long)
        self.neighbour_users = torch.as_tensor(item_users.indices, dtype=torch.long)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """L2 on the dense weights only (hop maps, output layer, v): the code leaves the
        memories M, C, E and all biases unregularised."""
        dense = [layer.weight for layer in self.hop_maps] + [self.output.weight, self.out_vector.weight]
        dense_ids = {id(p) for p in dense}
        rest = [p for p in self.parameters() if id(p) not in dense_ids]
        return [{"params": dense, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]

    # -- memory -------------------------------------------------------------------------------
    def neighbourhoods(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat neighbour user ids [S] and their pair index [S] for pairs (users[k], items[k]),
        after the self-exclusion and empty-neighbourhood policies."""
        neighbours, segment = csr_segments(self.neighbour_indptr, self.neighbour_users, items)
        if self.exclude_self:
            keep = neighbours != users[segment]
            neighbours, segment = neighbours[keep], segment[keep]
        if self.empty_neighbourhood == "self":
            empty = torch.bincount(segment, minlength=len(items)) == 0
            if empty.any():
                pairs = torch.nonzero(empty).squeeze(1)
                neighbours = torch.cat([neighbours, users[pairs]])
                segment = torch.cat([segment, pairs])
                order = torch.argsort(segment, stable=True)
                neighbours, segment = neighbours[order], segment[order]
        return neighbours, segment

    def _read(self, query: torch.Tensor, memory: RaggedMemory) -> tuple[torch.Tensor, torch.Tensor]:
        if self.attention == "ragged":
            return ragged_attention_read(query, memory)
        state = ragged_to_padded(memory)
        read, weights = attention_read(query, state)
        return read, weights[state.mask]

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor, *, with_attention: bool = False):
        """Scores of (users[k], items[k]) pairs: long [P], long [P] → [P].

        With ``with_attention`` also returns (neighbour ids [S], pair index [S], last-hop
        weights [S]) for explanations.
        """
        m_u, e_i = self.user_memory(users), self.item_memory(items)
        neighbours, segment = self.neighbourhoods(users, items)
        memory = RaggedMemory(self.user_output(neighbours), segment, len(items),
                              keys=self.user_memory(neighbours))
        z = m_u + e_i                                                  # eq. (2)
        o, weights = self._read(z, memory)                             # eqs. (3)-(4)
        for hop_map in self.hop_maps:
            z = torch.relu(hop_map(z) + o)                             # eq. (6); bias inside hop_map
            o, weights = self._read(z, memory)
        hidden = torch.relu(self.output(torch.cat([m_u * e_i, o], dim=-1)))   # eq. (5)
        scores = self.out_vector(hidden).squeeze(-1)
        return (scores, (neighbours, segment, weights)) if with_attention else scores

    # -- contract -----------------------------------------------------------------------------
    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        users = query.users[:, None].expand_as(items)
        return self.pair_scores(users.reshape(-1), items.reshape(-1)).view(items.shape)

    def score_all(self, query: Query) -> torch.Tensor:
        """All items for each user.

        The neighbourhoods are the same for every user, so a batch of users reads them through
        one shared layout (:class:`~memrec.memory.read.SharedLayout`): hop 1's scores split as
        m_u·m_v (one [B, U] product) + e_i·m_v (user-independent, computed once), reads are one
        sparse-dense product per hop, later hops one sampled product. Users go in groups of
        ``score_chunk_slots`` neighbourhood slots. ``exclude_self`` makes the layout
        user-dependent, so that ablation scores item chunks through :meth:`score_items`.
        """
        if self.exclude_self:
            return self._score_all_by_item_chunks(query)
        layout = SharedLayout(self.neighbour_indptr, self.neighbour_users)
        keys, items = self.user_memory.weight, self.item_memory.weight
        item_key_scores = (items[layout.segment] * keys[layout.rows]).sum(-1)     # e_i·m_v [S]
        group = max(1, self.score_chunk_slots // max(1, len(layout.rows)))
        return torch.cat([self._score_all_items(users, layout, item_key_scores)
                          for users in query.users.split(group)])

    def _score_all_items(self, users: torch.Tensor, layout: SharedLayout,
                         item_key_scores: torch.Tensor) -> torch.Tensor:
        """[B] users → [B, n_items], the same numbers as :meth:`pair_scores` on every pair."""
        keys, values = self.user_memory.weight, self.user_output.weight
        m_u, items = keys[users], self.item_memory.weight
        empty = layout.empty_segments

        def read(scores: torch.Tensor) -> torch.Tensor:
            o = shared_layout_read(shared_layout_softmax(scores, layout), values, layout)
            if self.empty_neighbourhood == "self" and empty.any():   # N(i) = [u]: reads c_u
                o[:, empty] = values[users][:, None, :]
            return o

        o = read((m_u @ keys.T)[:, layout.rows] + item_key_scores)                # eqs. (2)-(4)
        z = m_u[:, None, :] + items[None]
        for hop_map in self.hop_maps:
            z = torch.relu(hop_map(z) + o)                                         # eq. (6)
            o = read(shared_layout_scores(z, keys, layout))
        interaction = m_u[:, None, :] * items[None]
        hidden = torch.relu(self.output(torch.cat([interaction, o], dim=-1)))     # eq. (5)
        return self.out_vector(hidden).squeeze(-1)

    def _score_all_by_item_chunks(self, query: Query) -> torch.Tensor:
        """All items through :meth:`score_items`, in item chunks of at most
        ``score_chunk_slots`` neighbourhood slots across the batch."""
        users = query.users
        degrees = (self.neighbour_indptr[1:] - self.neighbour_indptr[:-1]).clamp(min=1)
        per_item = degrees.double() * len(users)
        bounds = self._chunk_bounds(per_item.cumsum(0).numpy())
        out = torch.empty(len(users), self.n_items)
        for lo, hi in bounds:
            items = torch.arange(lo, hi).expand(len(users), -1)
            out[:, lo:hi] = self.score_items(query, items)
        return out

    def _chunk_bounds(self, cumulative: np.ndarray) -> list[tuple[int, int]]:
        """Item ranges cut where the cumulative slot count crosses each multiple of the budget."""
        budget = self.score_chunk_slots
        cuts = np.searchsorted(cumulative, np.arange(budget, cumulative[-1], budget), side="right")
        edges = np.unique(np.concatenate([[0], cuts, [self.n_items]]))
        return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]

    @torch.no_grad()
    def explain(self, user: int, items: torch.Tensor) -> list[list[tuple[int, float]]]:
        """For each item, the neighbour users of the last hop with their attention weights,
        strongest first."""
        users = torch.full_like(items, user)
        _, (neighbours, segment, weights) = self.pair_scores(users, items, with_attention=True)
        out = []
        for k in range(len(items)):
            mine = segment == k
            order = torch.argsort(weights[mine], descending=True)
            out.append(list(zip(neighbours[mine][order].tolist(), weights[mine][order].tolist())))
        return out
