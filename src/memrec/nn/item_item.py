"""Item-item model helpers: history indicators, neighbour-list scoring, blocked top-k.

Shared by the neighbourhood baselines (ItemKNN, RP3β, EASE^R) and any model that scores a
request from the items in its history.
"""

from __future__ import annotations


import numpy as np
import torch

from ..data.query import Query

#: dense float64 elements per similarity block during fit (2**23 ≈ 64 MiB)
FIT_BLOCK_ELEMENTS = 2**23
#: gathered [B, L, k] elements per chunk of history positions at scoring time
SCORE_CHUNK_ELEMENTS = 2**24


def unique_history(query: Query, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each request's history as a sorted set. → items long [B, L], keep bool [B, L].

    ``keep`` is True on the first occurrence of each real item; sorting makes the result
    independent of the order of the history (so sums over it are too, bit for bit).
    """
    items, _ = query.history.masked_fill(~query.mask, n_items).sort(dim=1)
    keep = items < n_items
    keep[:, 1:] &= items[:, 1:] != items[:, :-1]
    return items.clamp_max(n_items - 1), keep


def sparse_history(query: Query, n_items: int) -> torch.Tensor:
    """Binary history matrix ``h`` as a coalesced sparse COO tensor [B, n_items].

    Padded positions (mask False) are dropped whatever they hold; repeated items give 1. Built
    with no loop over requests; its entries are in sorted order whatever the history order.
    """
    items, keep = unique_history(query, n_items)
    rows = torch.arange(len(query), device=items.device).unsqueeze(1).expand_as(items)[keep]
    index = torch.stack([rows, items[keep]])
    values = torch.ones(index.shape[1], dtype=torch.float32, device=items.device)
    return torch.sparse_coo_tensor(index, values, (len(query), n_items), is_coalesced=True,
                                   check_invariants=False, device=items.device)


def neighbour_scores(query: Query, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``h S`` for a top-k neighbour matrix stored as lists. ids long [I, k], weights [I, k]
    → float [B, I].

    Equivalent to the sparse product of the binary history ``h`` with ``S`` (``S[i, ids[i, m]] =
    weights[i, m]``) at cost B·L·k instead of B·I·k: gather each history item's neighbour list and
    scatter-add it. Long histories are processed in chunks of positions to bound memory.
    """
    n_items, k = ids.shape
    items, keep = unique_history(query, n_items)
    b, length = items.shape
    out = torch.zeros(b, n_items, dtype=weights.dtype, device=weights.device)
    step = max(1, SCORE_CHUNK_ELEMENTS // max(1, b * k))
    for start in range(0, length, step):  # chunks of history positions, not of requests
        part, use = items[:, start:start + step], keep[:, start:start + step]
        cols = ids[part].reshape(b, -1)                                  # [B, Lc·k]
        vals = (weights[part] * use.unsqueeze(-1)).reshape(b, -1)        # [B, Lc·k]
        out.scatter_add_(1, cols, vals)
    return out


def topk_rows(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, largest first. block [R, I] → ids, values [R, k]."""
    if k < block.shape[1]:
        ids = np.argpartition(-block, k - 1, axis=1)[:, :k]
    else:
        ids = np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
    vals = np.take_along_axis(block, ids, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)


def row_blocks(n_rows: int, n_cols: int):
    """Yield ``(start, stop)`` row ranges whose dense [rows, n_cols] block fits the fit budget."""
    step = max(1, FIT_BLOCK_ELEMENTS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)
