"""A trained model serving live users: each event is a write into the user's memory, each request
a read of it.

:class:`LiveModel` puts a loaded checkpoint (:class:`~memrec.checkpoint.SavedModel`) over a
:class:`~memrec.serving.store.StateStore`. What a user's state is depends on what the model
declares (``models/capabilities.py``):

=====================================  ==========================================================
model                                  state kept per user; what an event does
=====================================  ==========================================================
:class:`StatefulScorer`                the model's own state (RUM's slots, KSR's relation memory,
                                       STAMP's clicks, ...): ``update(state, item)``; NMRN's
                                       global memory (``shares_state``) is one state for all
:class:`HistoryScorer`, stateless      the history window (ItemKNN, EASE^R, RP3β): appended
other models                           none (BPR-MF, GMF, Pop, CMN): the event is logged and
                                       excluded from the user's recommendations
=====================================  ==========================================================

A user in the training data starts from the state its training history gives — exactly what
``memrec recommend RUN --user U`` scores. **Cold start** (a user the model never saw): a model
that scores from events alone (:class:`AnonymousScorer`) starts from its empty state and
personalises from the first event; a model that needs a learned user vector answers with
training popularity (``cold_start`` is true either way). A stateless request with a history
(``recommend_history``) applies the same rule to the same empty state, so after events E a new
user gets what the history E gets.

The write is vectorised over the users of a batch (one ``update`` per event position); a rebuild
for a new checkpoint replays the whole log the same way.

**Devices.** States live on the model's device (wherever :func:`~memrec.checkpoint.load_model`
put it) while they are read and written; a store keeps them as bytes, which
:meth:`~memrec.memory.state.TensorState.to_bytes` writes from the CPU, so a store filled by a GPU
server is read by a CPU one and back. The bookkeeping (ids, histories, popularity, the top-k)
stays on the CPU: each request's scores come back there, one row of ``n_items``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.utils.rnn import pad_sequence

from ..checkpoint import SavedModel
from ..devices import check_event_times
from ..data.query import Query
from ..errors import DataError
from ..memory.state import ItemWindow, TensorState
from ..models.capabilities import (AnonymousScorer, Explainer, HistoryScorer, MemoryEntry,
                                   MODE_KINDS, StateExplainer, StatefulScorer, make_query)
from .store import SHARED_KEY, Event, Record, StateStore


class BadRequest(DataError):
    """A request the service refuses (an HTTP 4xx): unknown items, a bad ``k``."""


class UnknownUser(DataError):
    """A user neither in the training data nor in the store."""


@dataclass(frozen=True)
class Recommendation:
    """Top-k for one request: raw item ids, scores, explanations (None unless asked)."""

    items: list[str]
    scores: list[float]
    explanations: list[list[MemoryEntry]] | None
    events_seen: int
    cold_start: bool


@dataclass(frozen=True)
class MemoryView:
    """A user's memory as the model holds it: one row per entry (label, vector or None)."""

    known: bool
    events_seen: int
    state: str | None
    kind: str
    rows: list[tuple[str, list[float] | None]]
    state_bytes: int


def checkpoint_digest(run_dir: str | Path) -> str:
    """The sha256 of a run's weights (``model.pt``): what states in a store are tagged with."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / "model.pt", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LiveModel:
    """A loaded model over a state store; see the module docstring."""

    def __init__(self, saved: SavedModel, store: StateStore, checkpoint: str):
        self.saved, self.store, self.checkpoint = saved, store, checkpoint
        self.model = saved.model.eval()
        model = self.model
        self.device = model.device
        self.stateful = isinstance(model, StatefulScorer)
        self.keeps_history = not self.stateful and isinstance(model, HistoryScorer)
        self.anonymous = isinstance(model, AnonymousScorer)
        self.shared = self.stateful and model.shares_state
        self._users = pd.Index([str(u) for u in saved.users.to_json()])
        self._item_ids = [str(i) for i in saved.items.to_json()]
        self._items = pd.Index(self._item_ids)
        # one request's ids: a dict lookup is ~100x cheaper than an Index call for a few ids
        self._user_of = {u: n for n, u in enumerate(self._users)}
        self._item_of = {i: n for n, i in enumerate(self._item_ids)}
        # one empty CSR row past the last user: the training history of a user never seen
        self._indptr = np.append(saved.seen_indptr, saved.seen_indptr[-1])
        self._popularity = torch.bincount(torch.as_tensor(saved.seen_items, dtype=torch.long, device=CPU),
                                          minlength=len(self._item_ids)).float()

    @property
    def name(self) -> str:
        return self.saved.name

    @property
    def n_items(self) -> int:
        return len(self._item_ids)

    # -- ids --------------------------------------------------------------------------------------
    def user_index(self, user: str) -> int:
        """The user's index in the model, -1 for a user it never saw."""
        return self._user_of.get(user, -1)

    def user_indices(self, users: list[str]) -> np.ndarray:
        if len(users) <= SMALL_REQUEST:
            return np.array([self._user_of.get(u, -1) for u in users], dtype=np.int64)
        return self._users.get_indexer(users)

    def known_users(self, limit: int) -> list[str]:
        return self._users[:limit].tolist()

    def item_indices(self, items: list[str]) -> torch.Tensor:
        """Raw item ids → indices; any id not in the catalogue is a :class:`BadRequest`
        naming it (the request is refused whole)."""
        indices = (np.array([self._item_of.get(i, -1) for i in items], dtype=np.int64)
                   if len(items) <= SMALL_REQUEST else self._items.get_indexer(items))
        if (indices < 0).any():
            unknown = [items[i] for i in np.flatnonzero(indices < 0)[:5]]
            raise BadRequest(f"item not in the catalogue: {', '.join(unknown)}")
        return torch.as_tensor(indices, dtype=torch.long, device=CPU)

    def _catalogued(self, items: tuple[str, ...]) -> torch.Tensor:
        """Indices of the logged items this catalogue has (a new checkpoint may lack some)."""
        indices = self._items.get_indexer(list(items)) if items else np.zeros(0, dtype=np.int64)
        return torch.as_tensor(indices[indices >= 0], dtype=torch.long, device=CPU)

    def _rows(self, users: np.ndarray) -> np.ndarray:
        """CSR rows of the training histories (unknown users: the empty row)."""
        return np.where(users >= 0, users, len(self._indptr) - 2)

    def _is_cold(self, index: int) -> bool:
        """Answered by popularity: a user the model never saw, and it needs user vectors."""
        return index < 0 and not self.anonymous

    # -- states -----------------------------------------------------------------------------------
    def initial_states(self, users: np.ndarray) -> TensorState | None:
        """The states of user indices [B] (-1: never seen) before any served event."""
        model = self.model
        if self.shared:
            return model.init_state(torch.zeros(1, dtype=torch.long, device=self.device))
        query = make_query(model, users, self._indptr, self.saved.seen_items, rows=self._rows(users),
                           times=self.saved.seen_times)
        if self.stateful:
            return model.encode_query(query)
        if self.keeps_history:
            return ItemWindow.from_history(query.history, query.mask, model.max_history)
        return None

    def _write(self, state: TensorState, items: torch.Tensor, times: torch.Tensor | None) -> TensorState:
        """One event per row (items, and times float64 with NaN for none, on the state's device;
        None for a model that does not read the clock)."""
        if self.stateful:
            return self.model.update(state, items, **({} if times is None else {"times": times}))
        return state.append(items, self.model.max_history)

    def replay(self, state: TensorState, items: torch.Tensor, mask: torch.Tensor,
               times: torch.Tensor | None = None) -> TensorState:
        """The states after events items long [B, L] (mask [B, L]; padding anywhere; their times
        float64 [B, L], None or NaN: unknown, read by a model that reads the clock): one
        vectorised write per position, on the model's device."""
        items, mask = items.to(self.device), mask.to(self.device)
        if self.stateful and self.model.reads_times:
            check_event_times(self.model, self.device)
            if times is None:
                times = torch.full(items.shape, float("nan"), dtype=torch.float64, device=CPU)
            times = times.to(self.device)
        else:
            times = None
        for t in range(items.shape[1]):
            state = self._write(state, items[:, t], None if times is None else times[:, t]).where(mask[:, t], state)
        return state

    def _decode(self, record: Record, index: int) -> TensorState | None:
        if record.state is None:
            return self.initial_states(np.array([index]))
        if self.stateful:
            return self.model.state_from_bytes(record.state)
        return ItemWindow.from_bytes(record.state, device=self.device)

    def _batch_states(self, records: list[Record], indices: np.ndarray) -> TensorState:
        """The current states of several users as one batch: the stored ones decoded, the
        others' initial states built in one pass."""
        fresh = np.array([r.state is None for r in records])
        parts, order = [], []
        if fresh.any():
            parts.append(self.initial_states(indices[fresh]))
            order.append(np.flatnonzero(fresh))
        for b in np.flatnonzero(~fresh):
            parts.append(self._decode(records[b], int(indices[b])))
            order.append([b])
        batch = type(parts[0]).cat(parts)
        order = np.argsort(np.concatenate(order), kind="stable")
        return batch.index(torch.as_tensor(order, device=self.device))

    def _user_state(self, index: int, records: dict[str, Record], user: str) -> TensorState | None:
        """The user's current state (None: the model keeps none, or a cold user)."""
        if self._is_cold(index):
            return None
        if self.shared:
            shared = self._decode(records[SHARED_KEY], 0)
            return self.model.shared_view(shared, torch.tensor([index], device=self.device))
        return self._decode(records[user], index)

    def _keys(self, users: list[str]) -> list[str]:
        return users + ([SHARED_KEY] if self.shared else [])

    # -- writes -----------------------------------------------------------------------------------
    def observe(self, events: list[Event]) -> int:
        """Apply events (in order) to their users' states and log them, all or nothing."""
        if any(e.user == SHARED_KEY for e in events):
            raise BadRequest(f"user id {SHARED_KEY!r} is reserved")
        items = self.item_indices([e.item for e in events])
        users = list(dict.fromkeys(e.user for e in events))
        self.store.append(events, self._keys(users), lambda records: self._advance(records, events, items),
                          self.checkpoint)
        return len(events)

    def _advance(self, records: dict[str, Record], events: list[Event],
                 items: torch.Tensor) -> dict[str, bytes | None]:
        """The new state bytes of every key the events write."""
        if self.shared:
            return {SHARED_KEY: self._advance_shared(records[SHARED_KEY], events, items)}
        if not (self.stateful or self.keeps_history):
            return {}
        users, groups = _group_by_user([e.user for e in events])
        indices = self.user_indices(users)
        times = self._event_times(events)
        warm = indices >= 0 if not self.anonymous else np.ones(len(users), dtype=bool)
        new: dict[str, bytes | None] = {}
        for chunk in np.array_split(np.flatnonzero(warm), max(1, -(-int(warm.sum()) // REPLAY_USERS))):
            if len(chunk) == 0:
                continue
            state = self._batch_states([records[users[b]] for b in chunk], indices[chunk])
            rows = [items[groups[b]] for b in chunk]
            batch = pad_sequence(rows, batch_first=True)
            lengths = torch.tensor([len(r) for r in rows], device=CPU)
            mask = torch.arange(batch.shape[1], device=CPU)[None, :] < lengths[:, None]
            when = None if times is None else pad_sequence([times[groups[b]] for b in chunk], batch_first=True,
                                                           padding_value=float("nan"))
            state = self.replay(state, batch, mask, when)
            # to_bytes copies to the CPU: the store's bytes are the same from any device
            new.update({users[b]: state.index(torch.tensor([n], device=self.device)).trimmed().to_bytes()
                        for n, b in enumerate(chunk)})
        return new

    def _event_times(self, events: list[Event]) -> torch.Tensor | None:
        """The events' timestamps (float64, NaN: none given) for a model that reads the clock;
        None for any other (its writes count events)."""
        if not (self.stateful and self.model.reads_times):
            return None
        return torch.tensor([float("nan") if e.timestamp is None else float(e.timestamp) for e in events],
                            dtype=torch.float64, device=CPU)

    def _advance_shared(self, record: Record, events: list[Event], items: torch.Tensor) -> bytes:
        """One memory written by every known user's events in turn (NMRN, global scope): the
        order matters, so it is a sequential replay over the batch's events."""
        state = self._decode(record, 0)
        for event, item in zip(events, items.to(self.device)):
            index = self.user_index(event.user)
            if index >= 0:
                users = torch.tensor([index], device=self.device)
                state = self.model.update(self.model.shared_view(state, users), item[None])
        return state.to_bytes()

    def forget(self, user: str) -> bool:
        """Delete the user's events and state. A shared state (NMRN's global memory) keeps what
        the user's events wrote until :meth:`rebuild` replays the log without them."""
        return self.store.forget(user)

    # -- reads ------------------------------------------------------------------------------------
    @torch.no_grad()
    def recommend(self, user: str, k: int = 10, *, explain: bool = False,
                  exclude_seen: bool = True) -> Recommendation:
        """Top-k for a user from its live state."""
        index = self.user_index(user)
        records = self.store.read(self._keys([user]))
        state = self._user_state(index, records, user)
        new_items = self._catalogued(records[user].items)
        return self._top(index, state, new_items, k, explain, exclude_seen)

    @torch.no_grad()
    def recommend_history(self, history: list[str], k: int = 10, *, explain: bool = False,
                          exclude_seen: bool = True) -> Recommendation:
        """Top-k for an anonymous request whose events are ``history`` (oldest first): the
        cold-start rule's state after replaying them; nothing is stored."""
        items = self.item_indices(history)
        on_device = items[None].to(self.device)
        state, mask = None, torch.ones(1, len(items), dtype=torch.bool, device=self.device)
        if self.anonymous and self.stateful:      # encode == replaying update (the contract)
            state = self.model.encode(torch.tensor([-1], device=self.device), on_device, mask)
        elif self.anonymous and self.keeps_history:
            state = ItemWindow.from_history(on_device, mask, self.model.max_history)
        return self._top(-1, state, items, k, explain, exclude_seen)

    def _top(self, index: int, state: TensorState | None, new_items: torch.Tensor, k: int,
             explain: bool, exclude_seen: bool) -> Recommendation:
        if not 1 <= k <= self.n_items:
            raise BadRequest(f"k must be between 1 and the catalogue's {self.n_items} items, not {k}")
        history = self._history(index, new_items)
        scores = self._scores(index, state, history).clone()
        if exclude_seen:
            scores[history] = float("-inf")
        top = scores.topk(k)
        keep = torch.isfinite(top.values)
        items, values = top.indices[keep], top.values[keep]
        return Recommendation([self._item_ids[i] for i in items.tolist()], values.tolist(),
                              self._explain(index, state, history, items) if explain else None,
                              events_seen=len(history), cold_start=index < 0)

    def _history(self, index: int, new_items: torch.Tensor) -> torch.Tensor:
        """Every item the user has had, oldest first: the training history, then served events."""
        row = self._rows(np.array([index]))[0]
        trained = self.saved.seen_items[self._indptr[row]:self._indptr[row + 1]]
        return torch.cat([torch.as_tensor(trained, dtype=torch.long, device=CPU), new_items])

    def _scores(self, index: int, state: TensorState | None, history: torch.Tensor) -> torch.Tensor:
        """The user's scores of every item [n_items], float, on the CPU."""
        users = torch.tensor([index], device=self.device)
        if self._is_cold(index):
            return self._popularity
        if self.stateful:
            scores = self.model.score_state(state, users)
        elif self.keeps_history:
            scores = self.model.score_all(Query(users, state.items, state.mask))
        else:
            scores = self.model.score_all(Query.for_users(users))
        return scores[0].float().cpu()

    def _explain(self, index: int, state: TensorState | None, history: torch.Tensor,
                 items: torch.Tensor) -> list[list[MemoryEntry]]:
        """What each item's score attended to (empty lists: the model has no attention, or the
        user is answered by popularity)."""
        model = self.model
        if self._is_cold(index) or not isinstance(model, Explainer) or len(items) == 0:
            return [[] for _ in items]
        users, items = torch.tensor([index], device=self.device), items.to(self.device)
        if isinstance(model, StateExplainer):
            entries = model.explain_state(state, users, items)
        else:   # explains from a query: the user's whole history (RUM-I), or the user (CMN)
            query = make_query(model, np.array([index]), np.array([0, len(history)]), history.numpy(),
                               rows=[0])
            entries = model.explain(query, items)
        return [[self.label(e) for e in row] for row in entries]

    def label(self, entry: MemoryEntry) -> MemoryEntry:
        """The entry with the raw id (users, items) or the label (relations, slots) as its id."""
        if entry.kind == "user":
            label = self.saved.users.to_raw([entry.id])[0]
        elif entry.kind in ("item", "click"):
            label = self._item_ids[entry.id % self.n_items]     # DMN's typed tokens: their item
        elif entry.kind in MODE_KINDS:                          # a copy read's repeat / explore
            label = f"slot {entry.id}" if entry.kind == "repeat" else "catalogue"
        else:
            names = self.model.entry_labels()
            label = names[entry.id] if names else entry.id
        return MemoryEntry(entry.kind, str(label), entry.weight)

    # -- the memory, as the model holds it --------------------------------------------------------
    @torch.no_grad()
    def memory(self, user: str) -> MemoryView:
        index = self.user_index(user)
        records = self.store.read(self._keys([user]))
        new_items = records[user].items
        if index < 0 and not new_items:
            raise UnknownUser(f"user {user!r} is not in the training data and has no events")
        state = self._user_state(index, records, user)
        history = self._history(index, self._catalogued(new_items))
        if state is None:
            rows = [(self._item_ids[i], None) for i in history.tolist()]
            return MemoryView(index >= 0, len(history), None, "history", rows, 0)
        entries = state.entries()
        size = len(state.to_bytes())
        if not entries.is_floating_point():
            kind = self.model.explains if isinstance(self.model, Explainer) else "item"
            rows = [(self._item_ids[i % self.n_items], None) for i in entries.tolist()]
            return MemoryView(index >= 0, len(history), type(state).__name__, kind, rows, size)
        names = self.model.entry_labels() if isinstance(self.model, Explainer) else None
        kind = self.model.explains if isinstance(self.model, Explainer) else "hidden"
        labels = names or [str(m) for m in range(len(entries))]   # as explanations name them
        rows = [(labels[m], [round(v, 5) for v in row]) for m, row in enumerate(entries.float().tolist())]
        return MemoryView(index >= 0, len(history), type(state).__name__, kind, rows, size)

    # -- a new checkpoint -------------------------------------------------------------------------
    def rebuild(self) -> dict:
        """Replay the whole event log through this checkpoint and replace every stored state
        (the store is then tagged with it). Events whose item this catalogue lacks are skipped
        and counted."""
        events = list(self.store.log())
        known = [e for e, i in zip(events, self._items.get_indexer([e.item for e in events])) if i >= 0]
        states: dict[str, bytes | None] = {}
        if known and (self.stateful or self.keeps_history):
            records = {k: Record() for k in self._keys(list(dict.fromkeys(e.user for e in known)))}
            states = self._advance(records, known, self.item_indices([e.item for e in known]))
        self.store.replace_states(states, self.checkpoint)
        return {"events": len(events), "skipped": len(events) - len(known), "states": len(states)}


#: where the bookkeeping tensors live, said explicitly: a default device a user set
#: (``torch.set_default_device``) must not move them away from the scores they index
CPU = torch.device("cpu")
#: up to this many ids, a request's ids are looked up one by one (else with one Index call)
SMALL_REQUEST = 64
#: users whose states one replay pass holds (a rebuild replays the log in such chunks)
REPLAY_USERS = 4096


def _group_by_user(users: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """The distinct users (first appearance order) and, per user, the positions of its events
    in order."""
    if len(users) <= SMALL_REQUEST:       # a request's few events: skip pandas' set-up cost
        groups: dict[str, list[int]] = {}
        for position, user in enumerate(users):
            groups.setdefault(user, []).append(position)
        return list(groups), [np.array(g) for g in groups.values()]
    codes, uniques = pd.factorize(np.asarray(users, dtype=object), sort=False)
    order = np.argsort(codes, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1])
    return list(uniques), groups


__all__ = ["LiveModel", "Recommendation", "MemoryView", "BadRequest", "UnknownUser",
           "checkpoint_digest"]
