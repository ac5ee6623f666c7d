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

Memory vocabulary: M and C are one :class:`~memrec.memory.slots.LearnedSlots` (keys M, values
C; written by back-propagation only); E is a plain embedding table (looked up, never read by
attention). The hops are :func:`~memrec.memory.read.multi_hop_read` with CMN's query map (eq. 6)
over a read of each item's neighbourhood: :func:`~memrec.memory.read.ragged_attention_read`
(or the padded :func:`~memrec.memory.read.attention_read`, ``attention="padded"``) for pairs,
the shared-layout read (:class:`~memrec.memory.read.SharedLayout`) for every item at once.

Item state (:class:`~memrec.models.capabilities.ItemStateScorer`): the memory is item-side. An
event (u, i) adds u to N(i); :class:`Neighbourhood` holds items' neighbourhoods (distinct user
ids, ascending, as ``prepare`` builds them), ``update_item_state`` writes one event per item and
``score_item_state`` reads them, through the same :meth:`CMN.score_neighbourhoods` as
``pair_scores``.

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

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.interactions import Interactions
from ..memory.read import (RaggedMemory, SharedLayout, attention_read, csr_segments,
                           multi_hop_read, ragged_attention_read, ragged_to_padded,
                           shared_layout_read, shared_layout_scores, shared_layout_softmax)
from ..memory.slots import LearnedSlots
from ..memory.state import TensorState
from .base import Query
from .capabilities import Explainer, ItemStateScorer, MemoryEntry, ranked_entries

#: state_dict names of M and C before they became one LearnedSlots (checkpoints still load)
_LEGACY_KEYS = {"user_memory.weight": "user_slots.key_table.weight",
                "user_output.weight": "user_slots.value_table.weight"}


@dataclass(frozen=True)
class Neighbourhood(TensorState):
    """Items' neighbourhoods N(i): the distinct users of each item, ascending user ids,
    left-aligned and right-padded with 0. Row b is one item's memory; widths differ between
    items, so a batch is as wide as its largest neighbourhood.

    Shapes
    ------
    users : long [B, W]; mask : bool [B, W]
    """

    users: torch.Tensor
    mask: torch.Tensor
    ragged = ("users", "mask")
    memory_field = "users"

    @classmethod
    def from_flat(cls, neighbours: torch.Tensor, segment: torch.Tensor, n_rows: int) -> "Neighbourhood":
        """Rows from flat lists: neighbours long [S], segment long [S] (non-decreasing row)."""
        padded = ragged_to_padded(RaggedMemory(neighbours[:, None], segment, n_rows))
        return cls(padded.values.squeeze(-1), padded.mask)

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(neighbours [S], segment [S]): the real entries row by row, in order."""
        segment = torch.nonzero(self.mask)[:, 0]
        return self.users[self.mask], segment



class CMN(ItemStateScorer, Explainer):
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

    Attributes
    ----------
    user_slots : LearnedSlots
        M (``key_table``, also the query users' m_u) and C (``value_table``);
        ``user_memory`` / ``user_output`` name the two tables.
    item_memory : nn.Embedding
        E.
    neighbour_indptr, neighbour_users : long buffers [n_items + 1], [S]
        The item → users CSR of the training data (``prepare``).

    Shapes
    ------
    score_items: users [B], items [B, C] → [B, C]; score_all: users [B] → [B, n_items];
    pair_scores / score_item_state: [P] pairs → [P]

    Example
    -------
    >>> model = CMN(n_users=4, n_items=3, dim=8, hops=2)
    >>> model.prepare(train)                                     # doctest: +SKIP
    >>> model.score_items(Query.for_users([0]), torch.tensor([[1, 2]])).shape  # doctest: +SKIP
    torch.Size([1, 2])
    """

    data_buffers = ("neighbour_users",)
    explains = "user"               # explain() names neighbour users
    item_state_type = Neighbourhood

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
        # optimizer that accepts them, e.g. train.optimizer = "tf_rmsprop"). The tables are made
        # and initialised in the order of earlier releases (M, C, E), so a seed gives the same
        # weights; registration order M, C, E too.
        keys = nn.Embedding(n_users, dim, sparse=sparse_gradients)                # M: keys; m_u
        values = nn.Embedding(n_users, dim, sparse=sparse_gradients)              # C: values
        item_memory = nn.Embedding(n_items, dim, sparse=sparse_gradients)         # E
        for table in (keys, values, item_memory):
            nn.init.trunc_normal_(table.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        self.user_slots = LearnedSlots.from_tables(values, keys)
        self.item_memory = item_memory
        self.hop_maps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(hops - 1))
        for layer in self.hop_maps:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.constant_(layer.bias, 1.0)  # so the ReLU fires at the start (authors' code)
        self.output = nn.Linear(2 * dim, dim)               # [U W] over concat(m_u⊙e_i, o^H)
        nn.init.kaiming_normal_(self.output.weight, nonlinearity="relu")
        nn.init.zeros_(self.output.bias)
        self.out_vector = nn.Linear(dim, 1, bias=False)      # v
        nn.init.xavier_uniform_(self.out_vector.weight)
        # item → users CSR of the training data (users ascending within an item)
        self.register_buffer("neighbour_indptr", torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("neighbour_users", torch.zeros(0, dtype=torch.long))

    @property
    def user_memory(self) -> nn.Embedding:
        """M: the user keys (and the query users' m_u)."""
        return self.user_slots.key_table

    @property
    def user_output(self) -> nn.Embedding:
        """C: the user values."""
        return self.user_slots.value_table

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also reads checkpoints written before M and C became ``user_slots``."""
        state_dict = {_LEGACY_KEYS.get(k, k): v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- data ---------------------------------------------------------------------------------
    def prepare(self, train: Interactions) -> None:
        """N(i) = every training user of item i, each once however often (u, i) occurs, in
        ascending user id (no truncation, as in the code)."""
        item_users = train.item_users()             # binary: repeated pairs collapse
        item_users.sort_indices()
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
        """Flat neighbour user ids [S] and their pair index [S] for pairs (users[k], items[k])
        from the training neighbourhoods, after the self-exclusion and empty-neighbourhood
        policies."""
        neighbours, segment = csr_segments(self.neighbour_indptr, self.neighbour_users, items)
        return self._apply_policies(users, neighbours, segment)

    def _apply_policies(self, users: torch.Tensor, neighbours: torch.Tensor, segment: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """``exclude_self`` drops u from its pair's neighbours; ``empty_neighbourhood="self"``
        gives a pair left with none the neighbourhood [u]."""
        if self.exclude_self:
            keep = neighbours != users[segment]
            neighbours, segment = neighbours[keep], segment[keep]
        if self.empty_neighbourhood == "self":
            empty = torch.bincount(segment, minlength=len(users)) == 0
            if empty.any():
                pairs = torch.nonzero(empty).squeeze(1)
                neighbours = torch.cat([neighbours, users[pairs]])
                segment = torch.cat([segment, pairs])
                order = torch.argsort(segment, stable=True)
                neighbours, segment = neighbours[order], segment[order]
        return neighbours, segment

    def _read(self, query: torch.Tensor, memory: RaggedMemory) -> tuple[torch.Tensor, torch.Tensor]:
        """One read of the pairs' neighbourhoods (eqs. 3-4): query [P, d] → (o [P, d], p [S])."""
        if self.attention == "ragged":
            return ragged_attention_read(query, memory)
        state = ragged_to_padded(memory)
        read, weights = attention_read(query, state)
        return read, weights[state.mask]

    def _next_query(self, z: torch.Tensor, o: torch.Tensor, hop: int) -> torch.Tensor:
        """z^h = ReLU(W^h z^{h-1} + o^h + b^h), eq. (6); the bias sits inside ``hop_maps``."""
        return torch.relu(self.hop_maps[hop - 1](z) + o)

    def _output(self, interaction: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """r̂ = vᵀ ReLU(U(m_u⊙e_i) + W o^H + b), eq. (5): [..., d], [..., d] → [...]."""
        hidden = torch.relu(self.output(torch.cat([interaction, o], dim=-1)))
        return self.out_vector(hidden).squeeze(-1)

    def score_neighbourhoods(self, users: torch.Tensor, items: torch.Tensor, neighbours: torch.Tensor,
                             segment: torch.Tensor, *, with_attention: bool = False):
        """Scores of (users[k], items[k]) pairs reading the given neighbourhoods: the one
        scoring path of ``pair_scores`` (training neighbourhoods) and ``score_item_state``
        (served item states).

        users, items long [P]; neighbours long [S] (user ids), segment long [S] (the pair each
        neighbour belongs to, non-decreasing), before the ``exclude_self`` /
        ``empty_neighbourhood`` policies, which are applied here → [P]. With ``with_attention``
        also returns (neighbour ids [S'], pair index [S'], last-hop weights [S']) after them.
        """
        m_u, e_i = self.user_memory(users), self.item_memory(items)
        neighbours, segment = self._apply_policies(users, neighbours, segment)
        slots = self.user_slots(neighbours[None], torch.ones_like(neighbours[None], dtype=torch.bool))
        memory = RaggedMemory(slots.values[0], segment, len(items), keys=slots.keys[0])  # c_v, m_v
        hops = multi_hop_read(m_u + e_i, None, self.hops, self._next_query,          # eq. (2)
                              read=lambda z: self._read(z, memory))                   # eqs. (3),(4),(6)
        scores = self._output(m_u * e_i, hops.read)                                   # eq. (5)
        return (scores, (neighbours, segment, hops.weights[-1])) if with_attention else scores

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor, *, with_attention: bool = False):
        """Scores of (users[k], items[k]) pairs from the training neighbourhoods: long [P],
        long [P] → [P] (see :meth:`score_neighbourhoods`)."""
        neighbours, segment = csr_segments(self.neighbour_indptr, self.neighbour_users, items)
        return self.score_neighbourhoods(users, items, neighbours, segment, with_attention=with_attention)

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
        first = m_u[:, None, :] + items[None]                                      # z⁰ [B, I, d]

        def read(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if z is first:      # hop 1: m_u·m_v + e_i·m_v without z⁰ per slot (eq. 2)
                scores = (m_u @ keys.T)[:, layout.rows] + item_key_scores
            else:
                scores = shared_layout_scores(z, keys, layout)
            weights = shared_layout_softmax(scores, layout)                        # eq. (3)
            o = shared_layout_read(weights, values, layout)                        # eq. (4)
            if self.empty_neighbourhood == "self" and empty.any():   # N(i) = [u]: reads c_u
                o[:, empty] = values[users][:, None, :]
            return o, weights

        hops = multi_hop_read(first, None, self.hops, self._next_query, read=read)  # eq. (6)
        return self._output(m_u[:, None, :] * items[None], hops.read)             # eq. (5)

    def _score_all_by_item_chunks(self, query: Query) -> torch.Tensor:
        """All items through :meth:`score_items`, in item chunks of at most
        ``score_chunk_slots`` neighbourhood slots across the batch."""
        users = query.users
        degrees = (self.neighbour_indptr[1:] - self.neighbour_indptr[:-1]).clamp(min=1)
        per_item = degrees.double() * len(users)
        bounds = self._chunk_bounds(per_item.cumsum(0).cpu().numpy())
        out = torch.empty(len(users), self.n_items, device=users.device)
        for lo, hi in bounds:
            items = torch.arange(lo, hi, device=users.device).expand(len(users), -1)
            out[:, lo:hi] = self.score_items(query, items)
        return out

    def _chunk_bounds(self, cumulative: np.ndarray) -> list[tuple[int, int]]:
        """Item ranges cut where the cumulative slot count crosses each multiple of the budget."""
        budget = self.score_chunk_slots
        cuts = np.searchsorted(cumulative, np.arange(budget, cumulative[-1], budget), side="right")
        edges = np.unique(np.concatenate([[0], cuts, [self.n_items]]))
        return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]

    # -- item state (serving) -----------------------------------------------------------------
    def init_item_state(self, items: torch.Tensor) -> Neighbourhood:
        """The training neighbourhoods of items long [B] (what ``prepare`` built)."""
        neighbours, segment = csr_segments(self.neighbour_indptr, self.neighbour_users, items)
        return Neighbourhood.from_flat(neighbours, segment, len(items))

    def update_item_state(self, state: Neighbourhood, users: torch.Tensor) -> Neighbourhood:
        """Row b's neighbourhood after user ``users[b]`` interacted with its item: u joins N(i)
        in ascending place; a user already in N(i) leaves it unchanged (``prepare`` counts a
        repeated (u, i) once)."""
        if len(users) != len(state):
            raise ValueError(f"{len(users)} users for {len(state)} item states")
        present = ((state.users == users[:, None]) & state.mask).any(1)
        grown = torch.cat([state.users, users[:, None]], dim=1)
        grown_mask = torch.cat([state.mask, ~present[:, None]], dim=1)
        last = grown.masked_fill(~grown_mask, torch.iinfo(grown.dtype).max)     # padding sorts last
        order = torch.argsort(last, dim=1, stable=True)
        mask = grown_mask.gather(1, order)
        width = int(mask.sum(1).max()) if len(mask) else 0
        return Neighbourhood(grown.gather(1, order).masked_fill(~mask, 0)[:, :width], mask[:, :width])

    def score_item_state(self, state: Neighbourhood, items: torch.Tensor,
                         users: torch.Tensor) -> torch.Tensor:
        """Scores of (users[c], items[c]) reading row c of ``state`` as N(items[c]): long [C]
        → [C]; equal to :meth:`pair_scores` when the state is :meth:`init_item_state`'s."""
        if not len(state) == len(items) == len(users):
            raise ValueError(f"{len(state)} item states for {len(items)} items and {len(users)} users")
        neighbours, segment = state.flat()
        return self.score_neighbourhoods(users, items, neighbours, segment)

    # -- explanations -------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, query: Query, items: torch.Tensor) -> list[list[MemoryEntry]]:
        """For one request (B = 1) and items long [C]: per item, the neighbour users of the last
        hop with their attention weights, strongest first."""
        if len(query) != 1:
            raise ValueError(f"explain takes a query of one request, got {len(query)}")
        users = query.users.expand(len(items))
        _, (neighbours, segment, weights) = self.pair_scores(users, items, with_attention=True)
        return [ranked_entries("user", neighbours[segment == k], weights[segment == k])
                for k in range(len(items))]


__all__ = ["CMN", "Neighbourhood"]
