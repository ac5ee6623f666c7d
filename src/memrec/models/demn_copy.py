"""DEMN's repeat/explore side: the copy read over the history store (``model.repeat``, issue 22;
see "Copy read" in models/demn.py) and the explanations (``StateExplainer``) — per recommended
item, the history entries its top-r read (L4) retrieved, led by how the copy read gave it. A
module of its own so ``models/demn.py`` keeps the model's equations (and stays under 600 lines)."""

from __future__ import annotations

import math

import torch

from ..memory.read import copy_candidate_scores, copy_scores, masked_softmax, repeat_share
from ..memory.retrieval import top_r_read
from ..nn.rows import row_products
from .capabilities import MemoryEntry, mode_entries, ranked_entries
from .demn_log import window_ages


def copy_read(model, rows, memory, hist_q, hist_mask, hist_age) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy's weights over the history store and its gate logit, both from h = p_u +
    mean_s M_u,s: w ∝ exp(h·q_m/√d − λ_h log(1 + age_m)) over the valid entries (the history
    read's recency penalty, shared). rows [...], memory [..., S, d], hist_q [..., W, d],
    hist_mask / hist_age [..., W] → (w [..., W], gate logit [...])."""
    h = model.user_embedding(rows) + memory.mean(-2)
    logits = row_products(hist_q, h) / math.sqrt(model.dim) - model.history_recency * torch.log1p(hist_age)
    return masked_softmax(logits, hist_mask), model.copy.gate_logit(h)


def with_copy(model, scores, args, hist_items, candidates=None) -> torch.Tensor:
    """ŷ' = log((1 − g)·exp(ŷ) + g·c) of every item (candidates None) or of candidates [..., C],
    with ``args`` the leading arguments of ``DEMN._user_vectors``; ŷ itself without ``repeat``."""
    if not model.repeat:
        return scores
    weights, gate = copy_read(model, *args[:5])
    if candidates is None:
        return copy_scores(scores, weights, hist_items, args[3], gate)
    return copy_candidate_scores(scores, candidates, weights, hist_items, args[3], gate)


@torch.no_grad()
def explain_demn_state(model, state, users: torch.Tensor, items: torch.Tensor) -> list[list[MemoryEntry]]:
    """Per item of items long [C] (one state, B = 1), the history entries its top-r read
    retrieved, by the attention each got (the items they hold; none when the history read is
    off; with ``read = "user"`` the last item's retrieval, the same for every item). With the
    copy read, each item's entries start with how it was recommended: "repeat" (id: the store
    slot of the item's latest entry, weight: the copy's share of its mixture) when the copy
    gave at least half, else "explore" (id -1, weight: the catalogue's share)."""
    window = state.window
    stored, valid = window.items[0], window.mask[0]
    ranked = [[] for _ in range(len(items))]
    if model.use_history:
        keys = model.item_embedding(window.items)
        q = model.item_embedding(items)[None]
        if model.read == "user":
            q = model._last_item_queries(keys, window.mask).expand(-1, len(items), -1)
        bias = -model.history_recency * torch.log1p(window_ages(window))
        weights = top_r_read(q, keys, keys, window.mask, model.top_r, bias)[1][0]             # [C, W]
        ranked = [ranked_entries("item", stored[row > 0], row[row > 0]) for row in weights]
    if not model.repeat:
        return ranked
    rows = model._own_rows(users)
    copy, gate = copy_read(model, rows, state.values, model.item_embedding(window.items), window.mask,
                                  window_ages(window))
    share = repeat_share(model.score_state(state, users), copy, window.items, window.mask, gate)[0, items]
    return [[mode, *entries] for mode, entries in zip(mode_entries(share, stored, valid, items), ranked)]


__all__ = ["copy_read", "with_copy", "explain_demn_state"]
