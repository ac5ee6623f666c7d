"""Top-r retrieval over a long store: DEMN's history read (L4), UBR4CTR-style — retrieve the r
entries most similar to the query, then attend over them. Its own module beside ``read`` (the
attention reads over a whole memory), which it builds on (``masked_softmax``)."""

from __future__ import annotations

import torch

from .read import masked_softmax


def top_r_read(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
               r: int, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Retrieve, then attend: each query keeps the ``r`` valid entries with the highest ⟨q, k⟩
    and reads them with softmax(⟨q, k⟩ + bias) (UBR4CTR-style retrieval over a long history).

    Selection uses the similarity alone (ties to the later entry), so the bias (DEMN's recency penalty −λ·log(1 + age))
    reweights what was retrieved without changing *what* is retrieved. Fewer than ``r`` valid
    entries: all of them; none: the zero read. Batch dimensions ``...`` broadcast between the
    queries and the store, so every prefix of a sequence can read its own causal store.

    queries [..., C, D]; keys [..., M, D]; values [..., M, Dv]; mask bool [..., M];
    bias [..., M] or None → (read [..., C, Dv], weights [..., C, M], zero off the top r).
    """
    scores = _shared_store_product(queries, keys.transpose(-1, -2))            # ⟨q, k⟩, [..., C, M]
    valid = mask.unsqueeze(-2).expand_as(scores)
    kept = valid
    if r < scores.shape[-1]:                                                   # else: every valid entry
        kept = _top_r_mask(scores.masked_fill(~valid, float("-inf")), valid, r)
    logits = scores if bias is None else scores + bias.unsqueeze(-2)
    weights = masked_softmax(logits, kept)
    return _shared_store_product(weights, values), weights


def _top_r_mask(scores: torch.Tensor, valid: torch.Tensor, r: int) -> torch.Tensor:
    """The r valid entries with the highest scores [..., M] (invalid ones at −inf), ties (a
    repeated item) to the later entry, the more recent in an oldest-first store, so what is
    retrieved does not depend on the store's padding or width. Selection by the r-th largest
    score (one ``topk``, no sort of all M entries: the sort was a third of a full-ranking pass):
    every entry above it, then the latest of those equal to it until r are kept."""
    kth = scores.topk(r, dim=-1).values[..., -1:]                              # −inf: fewer than r valid
    above = scores > kth
    tied = (scores == kth) & valid
    room = r - above.sum(-1, keepdim=True)
    if bool((tied.sum(-1, keepdim=True) <= room).all()):                        # no tie to break
        return above | tied
    latest_first = tied.flip(-1).cumsum(-1).flip(-1)                           # 1 for the latest tie
    return above | (tied & (latest_first <= room))


def _shared_store_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left [..., P, C, K] @ right [..., 1, K, N] → [..., P, C, N] as one product per row of
    ``...`` ([P·C, K] @ [K, N]) rather than P small ones: every prefix of a sequence reads one
    shared store (its own causal part by the mask), and broadcasting would copy the store P
    times. Other shapes: a plain matmul."""
    if left.dim() < 4 or right.dim() != left.dim() or right.shape[-3] != 1 or left.shape[-3] == 1:
        return left @ right
    *lead, P, C, K = left.shape
    out = left.reshape(*lead, 1, P * C, K) @ right                             # [..., 1, P·C, N]
    return out.reshape(*lead, P, C, right.shape[-1])


__all__ = ["top_r_read"]
