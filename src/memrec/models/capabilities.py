"""What a model can do, declared by the classes it derives from.

Every registered recommender is a :class:`~memrec.models.base.Model` (a scorer over users ×
items). On top of that a model class declares, by inheritance, each capability it has:

=========================  ======================================================================
capability                 meaning (who dispatches on it)
=========================  ======================================================================
:class:`HistoryScorer`     queries carry the user's past items, the latest ``max_history``
                           (evaluation, façade, streaming)
:class:`AnonymousScorer`   anonymous requests (users == -1) are scored from their history:
                           sessions can be served (session protocol, ``recommend --session``)
:class:`StatefulScorer`    a per-user state written event by event: ``init_state`` / ``update`` /
                           ``score_state``, serialisable (serving; the streaming == batch tests)
:class:`ItemStateScorer`   a per-item state written by the events on the item (CMN's
                           neighbourhoods)
:class:`Explainer`         ``explain(query, items)``: the memory entries each score attended to
:class:`StateExplainer`    a stateful explainer that explains from a *state* (what a server holds)
:class:`AttentionTracer`   the read attention after every event of a history (KSR's plot)
:class:`NextItemSoftmax`   every prefix's state in one causal pass, scored against all items
                           (next-item training with a full softmax)
:class:`NextItemPairwise`  every prefix's scores of sampled candidates in one causal pass
                           (next-item training with a pairwise loss)
:class:`NextItemUserSoftmax` every prefix's scores of all items for a model whose state reads the
                           user and the clock too (next-item training with a full softmax: DEMN)
:class:`PurchasePredictor` typed events; trains on purchases when ``target == "purchase"``
:class:`StreamLearner`     learns on the time-ordered stream, its memory written as it goes (NMRN)
=========================  ======================================================================

The capabilities are abstract base classes: declaring one without implementing its methods fails
when the model is constructed, and ``isinstance`` is the only test anyone makes.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..memory.state import TensorState
from ..devices import check_event_times
from .base import Model, Query

#: the kinds of memory entries an explanation names
ENTRY_KINDS = ("user", "item", "relation", "slot", "click")
#: the first entry of a copy-read model's explanation: the item was recommended as a "repeat" of
#: a remembered slot (its id: the slot, its weight: the share of the item's probability the copy
#: gave) or as an "explore" of the catalogue (its weight: the catalogue's share)
MODE_KINDS = ("repeat", "explore")


# -- queries ---------------------------------------------------------------------------------------
class HistoryScorer(Model):
    """Scores from the request's history: each query carries the user's past items, oldest
    first, the most recent ``max_history`` of them (None: all).

    ``max_history`` is the model's own cap (a hyper-parameter where the paper has one); callers
    read it from here and nowhere else.
    """

    max_history: int | None = None


class AnonymousScorer(Model):
    """Anonymous requests (``users == -1``: a live session, a test session of a session dataset)
    can be scored: the scores depend on the request's history (or nothing). Most such models
    ignore the user index altogether; one with learned user vectors may read a known user's
    own and a learned anonymous user's for -1 (``reads_known_users``: DEMN)."""

    #: a known user's scores also read its learned vectors, so they differ from the scores of
    #: the same history sent anonymously (which read the model's anonymous user instead)
    reads_known_users: ClassVar[bool] = False


def make_query(model: Model, users, indptr: np.ndarray, items: np.ndarray, rows=None,
               times: np.ndarray | None = None) -> Query:
    """The query ``model`` needs for ``users``: with their histories (CSR rows ``rows``, default
    ``users``) capped at the model's ``max_history`` when it is a :class:`HistoryScorer`, else
    the users alone; built on the model's device (a tensor of users is moved there). ``times``
    (aligned with ``items``) go with the histories to a model that ``reads_times``."""
    device = model.device
    if times is not None:
        check_event_times(model, device)
    if isinstance(model, HistoryScorer):
        query = Query.from_csr(users, users if rows is None else rows, indptr, items, model.max_history,
                               device=device, times=times if model.reads_times else None)
    else:
        query = Query.for_users(users, device=device)
    return query.to(device)


# -- state -----------------------------------------------------------------------------------------
class StatefulScorer(Model):
    """A per-user state that each event updates, and scores read from it (DESIGN.md, "streaming
    == batch"):

    * serving: ``init_state(users)`` → ``update(state, items)`` once per arriving event →
      ``score_state(state, users[, items])``; states are :class:`TensorState` s, so a store keeps
      them as bytes (:meth:`state_from_bytes` reads them back);
    * batch: ``encode(users, history, mask)`` is the state after a whole padded history, equal to
      replaying ``update`` event by event (the default *is* that replay; models override it with
      a vectorised equivalent, and the registry-wide property test holds them to it).

    ``init_state`` is the state before any *new* event: empty for sequence models, the memory
    the model holds after training for models that keep one (MARS's recent items, NMRN's memory).
    ``score_all`` / ``score_items`` are ``score_state(encode(...))``.
    """

    #: the class of this model's states (for :meth:`state_from_bytes`); an instance attribute
    #: where a hyper-parameter decides (RUM-I's copy read keeps the slots' items too)
    state_type: type[TensorState]
    #: one state for every user, written by every user's events (NMRN's global memory): a
    #: server keeps it under one key; an instance attribute where a hyper-parameter decides
    shares_state: bool = False

    @abstractmethod
    def init_state(self, users: torch.Tensor) -> TensorState:
        """The state before any new event, for users long [B]."""

    @abstractmethod
    def update(self, state: TensorState, items: torch.Tensor) -> TensorState:
        """The state after one more event per row: items long [B]."""

    @abstractmethod
    def score_state(self, state: TensorState, users: torch.Tensor,
                    items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores from a state: every item ([B, n_items]) or the candidates items [B, C]."""

    def encode(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> TensorState:
        """The state after a padded history [B, L] (mask [B, L]): replays :meth:`update`,
        leaving rows whose step is padding unchanged."""
        state = self.init_state(users)
        for t in range(history.shape[1]):
            state = self.update(state, history[:, t]).where(mask[:, t], state)
        return state

    def shared_view(self, state: TensorState, users: torch.Tensor) -> TensorState:
        """The one shared state as the state of users long [B] (models with ``shares_state``
        override this; for the others a state is already one user's)."""
        return state

    def state_from_bytes(self, data: bytes) -> TensorState:
        """A state :meth:`TensorState.to_bytes` wrote, on this model's device."""
        return self.state_type.from_bytes(data, device=self.device)

    def encode_query(self, query: Query) -> TensorState:
        """:meth:`encode` of the query's histories, with their times for a model that
        ``reads_times`` (its ``encode`` takes ``times=``)."""
        clock = {"times": query.times} if self.reads_times else {}
        return self.encode(query.users, query.history, query.mask, **clock)

    def score_all(self, query: Query) -> torch.Tensor:
        return self.score_state(self.encode_query(query), query.users)

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        return self.score_state(self.encode_query(query), query.users, items)


class ItemStateScorer(Model):
    """A per-*item* state written by the events on the item: an event (u, i) adds u to item
    i's memory (CMN's neighbourhoods). Serving keeps one state per item; ``prepare`` builds the
    same states from the training data in one pass.
    """

    item_state_type: ClassVar[type[TensorState]]

    @abstractmethod
    def init_item_state(self, items: torch.Tensor) -> TensorState:
        """The memory of items long [B] before any new event."""

    @abstractmethod
    def update_item_state(self, state: TensorState, users: torch.Tensor) -> TensorState:
        """Each item's memory after user ``users[b]`` interacted with item b."""

    @abstractmethod
    def score_item_state(self, state: TensorState, items: torch.Tensor,
                         users: torch.Tensor) -> torch.Tensor:
        """Scores of (users[c], items[c]) pairs from the items' states: long [C] → [C]."""


# -- explanations ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEntry:
    """One memory entry a score attended to: ``kind`` (one of :data:`ENTRY_KINDS`, or of
    :data:`MODE_KINDS` for how a copy read recommended the item), its index
    (a user or item index, a relation or slot number), and its attention weight."""

    kind: str
    id: int
    weight: float


class Explainer(Model):
    """Models with attention over a memory say what each score attended to."""

    #: the kind of entry this model's memory holds
    explains: ClassVar[str]

    @abstractmethod
    def explain(self, query: Query, items: torch.Tensor) -> list[list[MemoryEntry]]:
        """For one request (a query of B = 1) and items long [C]: per item, the memory entries
        its score read, strongest first."""

    def entry_labels(self) -> list[str] | None:
        """Names of the relation / slot entries (None: they are numbered)."""
        return None


class StateExplainer(StatefulScorer, Explainer):
    """A stateful model whose explanation is a function of the state alone, so a server can
    explain a live state (one written event by event, perhaps by events no query history
    holds). :meth:`explain` is :meth:`explain_state` of the query's encoded state."""

    @abstractmethod
    def explain_state(self, state: TensorState, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """For one state (B = 1) of user ``users[0]`` and items long [C]: per item, the memory
        entries its score read, strongest first."""

    @torch.no_grad()
    def explain(self, query: Query, items: torch.Tensor) -> list[list[MemoryEntry]]:
        return self.explain_state(self.encode_query(query), query.users, items)


class AttentionTracer(Model):
    """The read attention after every event of a history (KSR: over relations)."""

    @abstractmethod
    def attention_trace(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One history (B = 1) → attention [n_events, n_entries]."""

    @abstractmethod
    def entry_labels(self) -> list[str] | None: ...


def ranked_entries(kind: str, ids: torch.Tensor, weights: torch.Tensor) -> list[MemoryEntry]:
    """The entries ids [M] with weights [M], strongest first."""
    order = torch.argsort(weights, descending=True)
    return [MemoryEntry(kind, int(i), float(w)) for i, w in zip(ids[order].tolist(), weights[order].tolist())]


def mode_entries(share: torch.Tensor, slot_items: torch.Tensor, mask: torch.Tensor,
                 items: torch.Tensor) -> list[MemoryEntry]:
    """How a copy read recommended each of items long [C] (:data:`MODE_KINDS`): a "repeat" entry
    (id: the latest slot holding the item, weight: the share of its probability the copy gave)
    when the copy gave at least half of it, else an "explore" entry (id -1, weight: the
    catalogue's share). share [C] (``memory.read.repeat_share`` at the items), slot_items long
    [M] and mask bool [M] of the one memory read."""
    holds = (slot_items[None, :] == items[:, None]) & mask                  # [C, M]
    slots = torch.arange(holds.shape[1], device=holds.device)
    latest = torch.where(holds, slots, -1).max(1).values if holds.shape[1] else -torch.ones_like(items)
    return [MemoryEntry("repeat", int(slot), float(r)) if r >= 0.5 else MemoryEntry("explore", -1, float(1 - r))
            for slot, r in zip(latest.tolist(), share.tolist())]


# -- training --------------------------------------------------------------------------------------
class NextItemSoftmax(Model):
    """Next-item training with a full softmax: every prefix's state in one causal pass."""

    #: the scores (``prefix_outputs``, ``score_all``) are log-probabilities already — a mixture
    #: such as the copy read's (``memory/read.py``), which no softmax over logits can express —
    #: so training takes their negative log-likelihood instead of a softmax cross-entropy. An
    #: instance attribute where a hyper-parameter decides (STAMP's ``repeat``).
    outputs_log_probabilities: bool = False

    @abstractmethod
    def prefix_states(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The state after every position of a right-padded history [B, L] → [B, L, d];
        position t sees events 0..t only."""

    @abstractmethod
    def output(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every item from the catalogue: states [..., d] → [..., n_items]."""

    def prefix_outputs(self, history: torch.Tensor, mask: torch.Tensor,
                       positions: torch.Tensor) -> torch.Tensor:
        """Scores of every item after the positions bool [B, L] selects, in row-major order →
        [P, n_items]: what next-item training ranks each target by. The default is ``output``
        of those prefix states; a model whose scores read more than the state (a copy read over
        the prefix's own clicks) overrides it."""
        return self.output(self.prefix_states(history, mask)[positions])


class NextItemPairwise(Model):
    """Next-item training with a pairwise loss: every prefix's candidate scores in one pass."""

    @abstractmethod
    def prefix_scores(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor,
                      candidates: torch.Tensor) -> torch.Tensor:
        """Scores of candidates long [B, L, C] for the item after each position of a
        right-padded history [B, L] → [B, L, C]; position t sees events 0..t only."""


class NextItemUserSoftmax(Model):
    """Next-item training with a full softmax for a model whose prefix states read more than the
    history: the user's own row and, with ``reads_times``, the events' times (DEMN). Every
    prefix's scores of all items come from one pass."""

    #: why this configuration cannot score all items as one product per prefix (None: it can):
    #: an instance attribute, since hyper-parameters decide (DEMN: only its last-item read
    #: without the item memory does), and ``make_task`` names it in its error
    softmax_unavailable: str | None = None

    @abstractmethod
    def prefix_user_outputs(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor,
                            positions: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item after the positions bool [B, L] selects, in row-major order, for
        the sequences' users [B] (times [B, L] for a model that reads the clock) → [P, n_items]."""


class PurchasePredictor(NextItemSoftmax):
    """Typed events (history tokens = type · n_items + item); with ``target == "purchase"`` the
    purchase events are the training targets."""

    target: str
    event_types: int
    purchase_type: int

    @abstractmethod
    def candidate_scores(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of given candidates: states [P, d], items [P, C] → [P, C]."""


class StreamLearner(Model):
    """Learns on the time-ordered stream: each micro-batch is scored from the memory before it,
    then written into it (``training/stream.py``)."""

    @abstractmethod
    def stream_step(self, users: torch.Tensor, items: torch.Tensor,
                    candidates: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def stream_step_exact(self, users: torch.Tensor, items: torch.Tensor,
                          candidates: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def observe(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Write events into the memory without learning."""

    @abstractmethod
    def reset_memory(self) -> None: ...

    @abstractmethod
    def forget_pending(self) -> None: ...


__all__ = ["ENTRY_KINDS", "MODE_KINDS", "HistoryScorer", "AnonymousScorer", "make_query", "StatefulScorer",
           "ItemStateScorer", "MemoryEntry", "Explainer", "StateExplainer", "AttentionTracer", "ranked_entries",
           "mode_entries",
           "NextItemSoftmax", "NextItemPairwise", "NextItemUserSoftmax", "PurchasePredictor", "StreamLearner"]
