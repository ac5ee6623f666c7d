"""``StatefulScorer``: the contract of models whose user representation evolves event by event.

A stateful scorer keeps a per-user state (a FIFO of item embeddings, a feature memory, a GRU
hidden vector, the last item) and offers the same computation in two execution modes
(DESIGN.md, "streaming == batch"; spec ``rum-ksr-stamp-nmrn.md`` §0.1):

* **streaming / serving**: ``init_state(users)`` → ``update(state, items)`` once per arriving
  event → ``score_state(state, users[, items])``. States are plain tensors (or
  :class:`~memrec.memory.state.MemoryState`), kept off the autograd graph by the caller.
* **batch**: ``encode(users, history, mask)`` builds the state after a whole padded history in
  one call; it must equal replaying ``update`` event by event (the tests check this for random
  sequences). The default ``encode`` *is* that replay; models override it with a vectorised
  equivalent.
* **training**: ``prefix_scores(users, history, mask, candidates)`` scores, at every position t
  of a padded sequence, candidates for the item at t + 1 from the state after event t, in one
  causal pass: no future item ever enters a state and no prefix costs a forward of its own.

``score_all`` / ``score_items`` (the :class:`~memrec.models.base.Model` contract the evaluation
protocols use) are ``score_state(encode(...))``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..memory.state import MemoryState
from ..memory.write import select_rows
from .base import Model, Query

#: what a model's state is: a tensor, a MemoryState, or a tuple of them; opaque to callers
State = Any


class StatefulScorer(Model):
    """Base class of per-user sequential models (RUM-I, RUM-F, FPMC, GRU4Rec).

    Subclasses implement :meth:`init_state`, :meth:`update`, :meth:`score_state` and
    :meth:`prefix_scores`, and may override :meth:`encode` with a faster path.
    """

    needs_history = True
    task = "next_item"

    # -- streaming ----------------------------------------------------------------------------
    def init_state(self, users: torch.Tensor) -> State:
        """The state before any event, for users long [B]."""
        raise NotImplementedError

    def update(self, state: State, items: torch.Tensor) -> State:
        """The state after one more event per row: items long [B]."""
        raise NotImplementedError

    def score_state(self, state: State, users: torch.Tensor,
                    items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores from a state: every item ([B, n_items]) or the candidates items [B, C]."""
        raise NotImplementedError

    def encode(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> State:
        """The state after a padded history [B, L] (mask [B, L]): replays :meth:`update`,
        leaving rows whose step is padding unchanged."""
        state = self.init_state(users)
        for t in range(history.shape[1]):
            state = select_state(mask[:, t], self.update(state, history[:, t]), state)
        return state

    # -- training -----------------------------------------------------------------------------
    def prefix_scores(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor,
                      candidates: torch.Tensor) -> torch.Tensor:
        """Scores of candidates long [B, L, C] for the item after each position of a
        right-padded history [B, L] → [B, L, C]; position t sees events 0..t only."""
        raise NotImplementedError

    # -- the Model contract -------------------------------------------------------------------
    def score_all(self, query: Query) -> torch.Tensor:
        return self.score_state(self.encode(query.users, query.history, query.mask), query.users)

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        return self.score_state(self.encode(query.users, query.history, query.mask),
                                query.users, items)


def select_state(condition: torch.Tensor, new: State, old: State) -> State:
    """Row-wise choice between two states of the same structure (tensors with the batch first,
    MemoryStates, or tuples of them): row b of ``new`` where ``condition[b]``, else of ``old``."""
    if isinstance(new, MemoryState):
        return select_rows(condition, new, old)
    if isinstance(new, tuple):
        return tuple(select_state(condition, n, o) for n, o in zip(new, old))
    c = condition.reshape(-1, *([1] * (new.dim() - 1)))
    return torch.where(c, new, old)


def chunked_items(n_items: int, batch: int, per_item_floats: int, budget: int = 1 << 25):
    """Item ranges for full ranking whose [batch, chunk, per_item_floats] intermediates stay
    within ``budget`` floats (128 MB in float32)."""
    size = max(1, budget // max(1, batch * per_item_floats))
    for start in range(0, n_items, size):
        yield slice(start, min(start + size, n_items))


__all__ = ["StatefulScorer", "State", "select_state", "chunked_items"]
