"""SASRec: self-attentive sequential recommendation (Kang & McAuley).

Kang, McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018. Official TensorFlow code:
``kang205/SASRec``. Klenitskiy, Vasilev. "Turning Dross Into Gold Loss: is BERT4Rec really better
than SASRec?" RecSys 2023 (the full cross-entropy recipe, the default here).

The input is the user's latest ``max_len`` items, each embedded (scaled by √d, as the authors'
code does) plus a learned position embedding, then dropout. ``blocks`` Transformer blocks follow,
each causal self-attention then a point-wise two-layer feed-forward network, both with residual
connections, layer normalisation and dropout (the authors' arrangement: the query is normalised
before the attention and the residual adds the normalised query). A final layer norm gives F_t,
and item i scores r_{i,t} = ⟨F_t, M_i⟩ with the **input** item embeddings M (shared, eq. (9)).

Every position of a sequence predicts its next item, all in one causal pass. Losses (the
trainer's ``train.loss``): ``softmax`` (cross-entropy over all items, RecSys'23) or ``bce`` with
one sampled negative per position (the paper, eq. (10)).

The state a live user keeps is the window of their latest ``max_len`` items
(:class:`~memrec.memory.state.ItemWindow`), re-encoded when scored: encoding a history and
replaying it event by event give the same window, so serving and training agree.

Deviations
----------
* Positions count from the window's oldest item (right padding, RecBole's convention) instead
  of the authors' left padding that puts the latest item at position n. With right padding a
  prefix's representation is exactly that of the prefix encoded alone, so training sees the
  very inputs serving gives.
* Every position of a user's training sequence is a target, its prefix truncated to the latest
  ``max_len`` items (RecBole's per-prefix samples); the paper keeps only each user's most recent
  ``max_len`` actions. Positions past the first window encode their own window, so a prefix's
  representation is always the one serving computes for that history.
* Adam's β₂ = 0.98 of the authors' code is ``train.adam_beta2`` in the shipped config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...memory.state import ItemWindow
from ..capabilities import NextItemPairwise, NextItemSoftmax
from ..session_memory import SessionMemory


class _Block(nn.Module):
    """Causal self-attention then a point-wise feed-forward network, the authors' layer order:
    q ← LN(x); x ← q + Attn(queries q, keys and values x); x ← x + FFN(LN(x)) (dropout on
    both sub-layers' outputs)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.attention_out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def _attend(self, queries: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Causal multi-head attention: queries, x [B, L, d] → [B, L, d]."""
        B, L, d = x.shape
        q, k, v = (t.view(B, L, self.heads, d // self.heads).transpose(1, 2)
                   for t in (self.query(queries), *self.key_value(x).chunk(2, dim=-1)))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        return self.attention_out(out.transpose(1, 2).reshape(B, L, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        queries = self.attention_norm(x)
        x = queries + self.dropout(self._attend(queries, x))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x * mask[..., None]          # padding stays zero (it never reaches a real position)


class SASRec(SessionMemory, NextItemSoftmax, NextItemPairwise):
    """SASRec scorer.

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` unused: scores depend on the sequence only.
    dim : int
        Embedding size d (the paper: 50).
    blocks : int
        Self-attention blocks b (the paper: 2).
    heads : int
        Attention heads (the paper: 1); must divide ``dim``.
    dropout : float
        Dropout on embeddings, attention weights and sub-layer outputs (the paper: 0.5 on the
        sparse Amazon data, 0.2 on MovieLens-1M).
    max_len : int
        n, the longest history read (the paper: 50 on Amazon, 200 on MovieLens-1M).

    Shapes
    ------
    state: ItemWindow of the latest ``max_len`` items
    prefix_states: history [B, L] → [B, L, dim]
    """

    def __init__(self, n_users: int, n_items: int, *, dim: int = 50, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.5, max_len: int = 50):
        super().__init__(n_users, n_items)
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        self.max_history = max_len          # the window SessionMemory keeps for serving
        self.item_embedding = nn.Embedding(n_items, dim)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(blocks))
        self.final_norm = nn.LayerNorm(dim, eps=1e-8)
        for name, p in self.named_parameters():     # the authors' Glorot initialisation
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def _encode_windows(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """F for every position of left-aligned windows of at most ``max_len``: [B, W] → [B, W, d]."""
        positions = torch.arange(history.shape[1], device=history.device)
        x = self.item_embedding(history) * math.sqrt(self.item_embedding.embedding_dim)
        x = self.dropout(x + self.position_embedding(positions)) * mask[..., None]
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)

    def prefix_states(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """F after every position, each prefix read as serving reads it: its latest ``max_len``
        items. Positions inside the first window come from one causal pass; a later position t
        encodes its own window (t − max_len, t] (only long histories pay for these).
        [B, L] → [B, L, d]."""
        n = self.max_history
        first = self._encode_windows(history[:, :n], mask[:, :n])
        if history.shape[1] <= n:
            return first
        rows, ends = torch.nonzero(mask[:, n:], as_tuple=True)
        ends = ends + n
        windows = history.unfold(1, n, 1)[rows, ends - n + 1]                  # [P, n]
        late = self._encode_windows(windows, torch.ones_like(windows, dtype=torch.bool))[:, -1]
        states = first.new_zeros(*history.shape, first.shape[-1])
        states[:, :n] = first
        states[rows, ends] = late
        return states

    def session_state(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        """F after the last item of each window [B, W] (W ≤ max_len) → ([B, d], None). An empty
        window reads its first position with no item (a cold user's representation)."""
        if history.shape[1] == 0:
            history, mask = history.new_zeros(len(history), 1), mask.new_zeros(len(mask), 1)
        last = (mask.sum(1) - 1).clamp(min=0)
        states = self._encode_windows(history, mask)
        return states[torch.arange(len(states), device=states.device), last], None

    def output(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every item against the shared item embeddings: [..., d] → [..., n_items]."""
        return states @ self.item_embedding.weight.T

    def prefix_scores(self, users, history, mask, candidates):
        """The paper's pointwise scores for [B, L, C] candidate items at every position."""
        states = self.prefix_states(history, mask)
        return (states[:, :, None, :] * self.item_embedding(candidates)).sum(-1)
