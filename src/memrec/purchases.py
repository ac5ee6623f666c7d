"""Purchase prediction on typed event sessions: a temporal split, the evaluation cases, and
Precision@K / Recall@K over the purchases.

A typed session log is an :class:`~memrec.data.interactions.Interactions` whose ``rating``
column holds each event's type code (:data:`memrec.data.typed_sessions.EVENT_TYPES`: 0 view, 1 cart,
2 purchase) and whose ``session`` column (else ``user``) groups events into sessions.

* :func:`split_sessions_by_time` — whole sessions, ordered by their first event: the earliest go
  to train, the latest ``test_frac`` to test (no session is cut).
* :func:`purchase_cases` — one case per test session that buys something after at least one other
  event: the memory is the session's events **before its first purchase** (so no purchase, and
  nothing after one, enters it: the leakage rule); the relevant items are everything the session
  bought.
* :func:`evaluate_purchases` — ranks every item for each case (nothing excluded: a session may
  buy what it viewed) in batches, tie-exact metrics from :mod:`memrec.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.interactions import Interactions
from .data.typed_sessions import PURCHASE
from .evaluation import MetricAccumulator
from .metrics import metric_values, rank_counts
from .models.base import Model, Query
from .models.capabilities import make_query
from .models.dmn import event_tokens


def _session_key(data: Interactions) -> np.ndarray:
    return data.session if data.session is not None else data.user.astype(np.int64)


def _time(data: Interactions) -> np.ndarray:
    return data.timestamp if data.timestamp is not None else np.arange(len(data), dtype=np.float64)


def split_sessions_by_time(data: Interactions, test_frac: float = 0.2
                           ) -> tuple[Interactions, Interactions]:
    """(train, test): sessions sorted by their first event's time (ties: session id); the last
    ``round(test_frac · n_sessions)`` (at least 1) are the test sessions."""
    if not 0 < test_frac < 1:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    key, time = _session_key(data), _time(data)
    sessions, inverse = np.unique(key, return_inverse=True)
    if len(sessions) < 2:
        raise ValueError("a temporal session split needs at least two sessions")
    start = np.full(len(sessions), np.inf)
    np.minimum.at(start, inverse, time)
    by_start = np.lexsort((sessions, start))
    n_test = min(max(1, int(round(test_frac * len(sessions)))), len(sessions) - 1)
    is_test = np.zeros(len(sessions), bool)
    is_test[by_start[-n_test:]] = True
    rows = is_test[inverse]
    return data.take(np.flatnonzero(~rows)), data.take(np.flatnonzero(rows))


@dataclass(frozen=True)
class PurchaseCases:
    """CSR lists: memory tokens (events before the first purchase, oldest first) and the
    distinct purchased items, one row per case; ``sessions`` [C] the raw session keys."""

    sessions: np.ndarray
    memory_indptr: np.ndarray
    memory_tokens: np.ndarray
    bought_indptr: np.ndarray
    bought_items: np.ndarray

    def __len__(self) -> int:
        return len(self.sessions)


def purchase_cases(data: Interactions, purchase_type: int = PURCHASE) -> PurchaseCases:
    """The evaluation cases of a typed session log (see the module docstring)."""
    if data.rating is None:
        raise ValueError("purchase evaluation needs event type codes in the rating column")
    key, types = _session_key(data), data.rating.astype(np.int64)
    order = np.lexsort((np.arange(len(data)), _time(data), key))
    key, types, items = key[order], types[order], data.item[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    session_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(key)]))
    position = np.arange(len(key)) - starts[session_of]
    bought = types == purchase_type
    first_buy = np.full(len(starts), np.iinfo(np.int64).max)
    np.minimum.at(first_buy, session_of[bought], position[bought])
    cases = np.flatnonzero((first_buy > 0) & (first_buy < np.iinfo(np.int64).max))
    in_case = np.zeros(len(starts), bool)
    in_case[cases] = True
    memory = in_case[session_of] & (position < first_buy[session_of])           # before the first buy
    tokens = event_tokens(items, types, data.n_items)
    pairs = np.unique(np.stack([session_of[bought & in_case[session_of]],
                                items[bought & in_case[session_of]]], 1), axis=0)
    return PurchaseCases(
        sessions=key[starts[cases]],
        memory_indptr=np.r_[0, np.cumsum(np.bincount(session_of[memory], minlength=len(starts))[cases])],
        memory_tokens=tokens[memory],
        bought_indptr=np.r_[0, np.cumsum(np.bincount(pairs[:, 0], minlength=len(starts))[cases])],
        bought_items=pairs[:, 1])


@torch.no_grad()
def evaluate_purchases(model: Model, cases: PurchaseCases, ks=(1, 5, 10, 20),
                       batch_size: int = 512) -> dict[str, float]:
    """Mean metrics over the cases: Precision@K, Recall@K (and HR, NDCG, MRR, MAP, AUC)."""
    was_training = model.training
    model.eval()
    acc = MetricAccumulator()
    try:
        for start in range(0, len(cases), batch_size):
            rows = np.arange(start, min(start + batch_size, len(cases)))
            query = make_query(model, np.full(len(rows), -1), cases.memory_indptr,
                               cases.memory_tokens, rows=rows)
            relevant = Query.from_csr(rows, rows, cases.bought_indptr, cases.bought_items)
            counts = rank_counts(model.score_all(query), relevant.history, relevant.mask)
            acc.add(metric_values(counts, tuple(ks)))
    finally:
        model.train(was_training)
    return acc.mean()


__all__ = ["split_sessions_by_time", "PurchaseCases", "purchase_cases", "evaluate_purchases"]
