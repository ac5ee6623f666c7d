"""Purchase DMN: a multi-hop end-to-end memory network over a session of typed events —
a labelled reconstruction.

Gligorijevic, Gligorijevic, Raghuveer, Grbovic, Obradovic. "Modeling Mobile User Actions for
Purchase Recommendation using Deep Memory Networks." SIGIR 2018 (short paper). **No code, data,
hyper-parameters or model name are public and the paper's body could not be read here** (spec
``../shared/specs/cmn-mars-dmn.md`` §3): confirmed are the task (purchase recommendation from
sequences of mobile-app events), the approach ("deep memory networks" learning representations of
user actions) and a precision metric. The architecture below is the spec's MemN2N-style
reconstruction; we call it ``dmn`` / "purchase DMN" and claim no official acronym.

The idea: the memory is the session so far — one slot per event, embedded from its item and its
event type (a view and a cart of the same item are different memories). The query is the latest
event; it reads the memory several times (hops), each read refining the query, and the final
state scores every purchasable item.

Equation map (spec §3(a), MemN2N numbering; for the state after event t of a session):

* slots   a_s = A[item_s] + T_A[type_s],  c_s = C[item_s] + T_C[type_s],  s ≤ t   (§3(a))
* query   u¹ = Q[item_t] + T_Q[type_t]                                            (the last event)
* address p^h_s = softmax_{s ≤ t}(⟨u^h, a_s⟩)                                     (MemN2N eq. 1)
* read    o^h = Σ_s p^h_s c_s                                                     (MemN2N eq. 2)
* hop     u^{h+1} = u^h + o^h  (``hop="add"``)  or  ReLU(H u^h + o^h + b)  (``"linear"``, CMN's)
* output  ŷ = W (u^H + o^H), one row of W per purchasable item                    (MemN2N eq. 3)
* loss    softmax cross-entropy over the items (``train.loss = "softmax"``; ``sampled_softmax``
  or a pairwise loss against sampled candidates)

Causality: every prefix of a session is a prediction point and all are computed in one pass —
the memory of prefix t is the causal mask :func:`~memrec.memory.read.prefix_mask` (slots s ≤ t),
the reads are :func:`~memrec.memory.read.candidate_read` with the prefixes as the queries. The
target (event t + 1) and anything after it are never in prefix t's memory (the leakage rule;
tested by changing them).

Typed events travel as *tokens* inside the ordinary history tensor: token = type · n_items +
item (:func:`event_tokens`), so the shared ``Query``, trainer and session protocol carry them
unchanged; with ``event_types = 1`` a token is just the item (untyped click streams such as
Yoochoose and Diginetica).

Copy read (``repeat = True``; off by default, so the shipped results do not change)
------------------------------------------------------------------------------------
The memory holds the session's items, yet an item can only be recommended through its output
row W_i. With the copy read (``memory/read.py``, :class:`~memrec.memory.read.CopyRead`) the last
hop's attention p^H becomes a distribution c over the items of the events (token → item; an item
viewed and carted sums both slots' weights), mixed with the catalogue softmax by a learned gate on
the state, g = σ(w·(u^H + o^H) + b) (RepeatNet's repeat/explore decision, Ren et al. 2019):
p = (1 − g)·softmax(ŷ) + g·c. Scores are then log p, and training (next item or next purchase)
minimises −log p of the target (``outputs_log_probabilities``); the sampled purchase losses do not
apply (p needs the whole catalogue's softmax). This is our addition, not the paper's.

Deviations from the paper (all reconstructions; see ``docs/models/dmn.md``)
--------------------------------------------------------------------------------
* The whole architecture (slot embedding, last-event query, hop update, output layer) is the
  spec's MemN2N reading of the abstract. Category and time-bucket slot features are not built.
* ``target="purchase"`` trains only on purchase events (the paper's task); ``"next_item"``
  trains every next event, the setting of the public session datasets.
* The memory is the session's own events only (no cross-session user memory, no learned
  write): the spec's "memory rebuilt per session".
* ``max_history`` caps the memory to the most recent events (None: the whole session).
* ``repeat`` (the copy read above) is ours.
"""

from __future__ import annotations

import torch
from torch import nn

from ..memory.state import ItemWindow
from ..memory.read import CopyRead, candidate_read, multi_hop_read, prefix_mask, repeat_share
from .base import Query
from .capabilities import MemoryEntry, StateExplainer, PurchasePredictor, mode_entries, ranked_entries
from .session_memory import SessionMemory

HOPS = ("add", "linear")
TARGETS = ("next_item", "purchase")


def event_tokens(items: torch.Tensor, types: torch.Tensor, n_items: int) -> torch.Tensor:
    """Typed events as history tokens: type · n_items + item (long tensors of one shape)."""
    return types * n_items + items


class PurchaseDMN(SessionMemory, PurchasePredictor, StateExplainer):
    """Multi-hop memory network over the session's typed events (reconstruction).

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` is unused: scores depend on the session only. ``n_items`` is the
        purchasable catalogue (history tokens range over ``event_types · n_items``).
    dim : int
        Embedding size d.
    hops : int
        Memory reads H.
    hop : "add" | "linear"
        Query update between hops: u + o (MemN2N, adjacent tying) or ReLU(H u + o + b).
    event_types : int
        Distinct event types (1: untyped clicks; 3 for view / cart / purchase).
    target : "next_item" | "purchase"
        Which events are training targets (``purchase``: events of type ``purchase_type``).
    purchase_type : int
        The event type code of a purchase (2 in :data:`memrec.data.synthetic.EVENT_TYPES`).
    type_embeddings : bool
        Add the event-type embeddings to the slots and the query (False: the ablation that
        sees only which items a session touched, not how).
    max_history : int or None
        Keep only the most recent events in the memory.
    init_std : float
        Normal init of the embeddings.
    repeat : bool
        Add the copy read: the last hop's attention over the events becomes a distribution over
        their items, mixed with the catalogue softmax by a learned gate; scores are then
        log-probabilities (see "Copy read" above).

    Shapes
    ------
    state: :class:`~memrec.memory.state.ItemWindow` of the session's latest event tokens
    prefix_states: tokens [B, L], mask [B, L] → [B, L, d] (the state after each event)
    score_all: query.history tokens [B, L] → [B, n_items]
    """

    explains = "click"

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, hops: int = 2,
                 hop: str = "add", event_types: int = 1, target: str = "next_item",
                 purchase_type: int = 2, type_embeddings: bool = True,
                 max_history: int | None = None, init_std: float = 0.05, repeat: bool = False):
        super().__init__(n_users, n_items)
        if hops < 1:
            raise ValueError(f"hops must be at least 1, got {hops}")
        if hop not in HOPS:
            raise ValueError(f"hop must be one of {', '.join(HOPS)}, not {hop!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
        if event_types < 1 or (target == "purchase" and not 0 <= purchase_type < event_types):
            raise ValueError("event_types must be >= 1 and purchase_type one of its codes")
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be at least 1 (or None), got {max_history}")
        self.hops, self.hop, self.event_types = hops, hop, event_types
        self.target, self.purchase_type, self.max_history = target, purchase_type, max_history
        self.type_embeddings = type_embeddings
        self.item_query = nn.Embedding(n_items, dim)          # Q
        self.item_key = nn.Embedding(n_items, dim)            # A
        self.item_value = nn.Embedding(n_items, dim)          # C
        self.type_query = nn.Embedding(event_types, dim)      # T_Q
        self.type_key = nn.Embedding(event_types, dim)        # T_A
        self.type_value = nn.Embedding(event_types, dim)      # T_C
        self.item_output = nn.Embedding(n_items, dim)         # W
        for table in (self.item_query, self.item_key, self.item_value, self.type_query,
                      self.type_key, self.type_value, self.item_output):
            nn.init.normal_(table.weight, std=init_std)
        self.hop_maps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(hops - 1)) \
            if hop == "linear" else nn.ModuleList()
        self.repeat = self.outputs_log_probabilities = repeat
        if repeat:      # built last: the random draws of the other weights stay those of repeat=False
            self.copy = CopyRead(dim)    # gate g = σ(w·(u^H + o^H) + b): repeat vs explore
            nn.init.normal_(self.copy.gate.weight, std=init_std)
            nn.init.zeros_(self.copy.gate.bias)

    # -- memory -------------------------------------------------------------------------------
    def _split_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.numel() and int(tokens.max()) >= self.event_types * self.n_items:
            raise ValueError(f"history token {int(tokens.max())} is out of range for "
                             f"{self.event_types} event type(s) × {self.n_items} items")
        return tokens % self.n_items, tokens // self.n_items

    def _slots(self, tokens: torch.Tensor, mask: torch.Tensor):
        """(queries, keys, values) [B, L, d] of the events; padding rows are zero."""
        items, types = self._split_tokens(tokens * mask)
        if not self.type_embeddings:
            types = torch.zeros_like(types)          # one shared type row: it cannot tell types apart
        keep = mask[..., None].to(self.item_key.weight.dtype)
        query = self.item_query(items) + self.type_query(types)
        key = (self.item_key(items) + self.type_key(types)) * keep
        value = (self.item_value(items) + self.type_value(types)) * keep
        return query, key, value

    def _hops(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              readable: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """H reads; query [B, P, d], readable [B, P, L] → (u^H + o^H [B, P, d], weights per hop)."""
        def next_query(u: torch.Tensor, o: torch.Tensor, h: int) -> torch.Tensor:
            return torch.relu(self.hop_maps[h - 1](u) + o) if self.hop == "linear" else u + o

        hops = multi_hop_read(query, None, self.hops, next_query,               # eqs. 1–2 per hop
                              read=lambda u: candidate_read(u, key, value, readable))
        return hops.query + hops.read, hops.weights                              # u^H + o^H

    # -- every prefix in one pass ---------------------------------------------------------------
    def prefix_states(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The state after every event (memory = events 0..t, query = event t), one pass."""
        query, key, value = self._slots(history, mask)
        return self._hops(query, key, value, prefix_mask(mask, self.max_history))[0]

    def session_state(self, history: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The state after each row's last event: ([B, d], per-hop weights [B, L])."""
        length = mask.sum(1)
        if (length == 0).any():
            raise ValueError("the purchase DMN needs at least one event per session")
        query, key, value = self._slots(history, mask)
        last = query[torch.arange(len(query), device=query.device), length - 1][:, None, :]       # u¹ = the last event
        readable = mask.clone()
        if self.max_history is not None:                                      # most recent events only
            position = torch.arange(mask.shape[1], device=mask.device)[None]
            readable &= position >= (length[:, None] - self.max_history)
        state, weights = self._hops(last, key, value, readable[:, None, :])
        return state[:, 0], [w[:, 0] for w in weights]

    def output(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every purchasable item: states [..., d] → [..., n_items] (MemN2N eq. 3)."""
        return states @ self.item_output.weight.T

    def candidate_scores(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of given candidates (the pairwise option; not with the copy read, whose
        log-probabilities need every item): states [P, d], items [P, C] → [P, C]."""
        return (self.item_output(items) * states[:, None, :]).sum(-1)

    # -- the copy read (repeat = True) ------------------------------------------------------------
    def _mixture(self, logits: torch.Tensor, states: torch.Tensor, weights: torch.Tensor,
                 tokens: torch.Tensor, readable: torch.Tensor) -> torch.Tensor:
        """log p of the repeat/explore mixture: the last hop's weights [P, L] over the events
        tokens [P, L] (copied as their items), readable [P, L]; logits [P, n_items], states
        [P, d] → [P, n_items]."""
        return self.copy(logits, states, weights, tokens % self.n_items, readable)

    def window_scores(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        state, weights = self.session_state(items, mask)
        logits = self.output(state)
        # a window holds at most max_history events, so every event in it is readable
        return self._mixture(logits, state, weights[-1], items, mask) if self.repeat else logits

    def prefix_outputs(self, history: torch.Tensor, mask: torch.Tensor,
                       positions: torch.Tensor) -> torch.Tensor:
        """Scores after the selected prefixes (log-probabilities with the copy read, each prefix
        copying from the events it may read)."""
        if not self.repeat:
            return super().prefix_outputs(history, mask, positions)
        query, key, value = self._slots(history, mask)
        readable = prefix_mask(mask, self.max_history)
        states, weights = self._hops(query, key, value, readable)
        states = states[positions]
        rows = positions.nonzero()[:, 0]                     # row-major, as boolean indexing
        return self._mixture(self.output(states), states, weights[-1][positions], history[rows],
                             readable[positions])

    # -- explanations -------------------------------------------------------------------------
    @torch.no_grad()
    def explain_state(self, window: ItemWindow, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """The last hop's attention each event of the session got (ids are the events' items);
        the same for every item scored.

        With the copy read, each item's entries start with how it was recommended: a "repeat"
        entry (id: the window slot of the item's latest event, weight: the share of its
        probability the copy gave) when the copy gave at least half of it, else an "explore"
        entry (id -1, weight: the catalogue's share)."""
        state, weights = self.session_state(window.items, window.mask)
        last = weights[-1]
        events = window.mask[0]
        ranked = ranked_entries("click", window.items[0][events] % self.n_items, last[0][events])
        if not self.repeat:
            return [ranked for _ in range(len(items))]
        log_p = self._mixture(self.output(state), state, last, window.items, window.mask)
        slot_items = window.items % self.n_items
        share = repeat_share(log_p, last, slot_items, window.mask, self.copy.gate_logit(state))[0, items]
        return [[mode, *ranked] for mode in mode_entries(share, slot_items[0], events, items)]


__all__ = ["PurchaseDMN", "event_tokens"]
