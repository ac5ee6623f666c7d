"""GRU4Rec: a recurrent network over the item sequence (Hidasi et al.).

Hidasi, Karatzoglou, Baltrunas, Tikk. "Session-based Recommendations with Recurrent Neural
Networks." ICLR 2016; Hidasi & Karatzoglou. "Recurrent Neural Networks with Top-k Gains for
Session-based Recommendations." CIKM 2018 (the cross-entropy and BPR-max losses).

Item embedding → dropout → GRU → a linear map to the embedding size → scores against the item
table: ŷ_t = W h_t · Eᵀ. Every position of a sequence predicts the next item; all positions come
from one GRU pass over the padded sequence (right padding never reaches a real position).

Losses (the trainer's ``train.loss``): ``softmax`` (cross-entropy over all items; the later
paper's recommendation and RecBole's default), or ``bpr_max`` / ``bpr`` / ``bce`` over sampled
negatives. Deviations: user sequences padded into mini-batches rather than session-parallel
mini-batches (equivalent gradients per sequence; no hidden-state carry-over between unrelated
sessions); the output layer is tied to the input embeddings through the linear map (RecBole's
form; the original had a separate output table); negatives for the sampled losses are drawn from
the sampler instead of the mini-batch's other targets.
"""

from __future__ import annotations

import torch
from torch import nn

from dataclasses import dataclass

from ...memory.state import TensorState
from ..capabilities import (AnonymousScorer, HistoryScorer, NextItemPairwise, NextItemSoftmax,
                            StatefulScorer)


@dataclass(frozen=True)
class GRUHidden(TensorState):
    """A GRU's state: hidden float [B, layers, hidden]."""

    hidden: torch.Tensor
    memory_field = "hidden"


class GRU4Rec(StatefulScorer, HistoryScorer, AnonymousScorer, NextItemSoftmax, NextItemPairwise):
    """GRU4Rec scorer.

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` unused: scores depend on the sequence only.
    dim : int
        Item embedding size.
    hidden : int
        GRU hidden size.
    layers : int
        Stacked GRU layers.
    dropout : float
        Dropout on the input embeddings (training only).

    Shapes
    ------
    state: :class:`GRUHidden` hidden float [B, layers, hidden]
    prefix_states: history [B, L] → [B, L, dim]
    """

    state_type = GRUHidden

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, hidden: int = 128,
                 layers: int = 1, dropout: float = 0.3):
        super().__init__(n_users, n_items)
        self.item_embedding = nn.Embedding(n_items, dim)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True)
        self.project = nn.Linear(hidden, dim)
        nn.init.xavier_normal_(self.item_embedding.weight)

    # -- state --------------------------------------------------------------------------------
    def init_state(self, users):
        return GRUHidden(self.item_embedding.weight.new_zeros(len(users), self.gru.num_layers,
                                                              self.gru.hidden_size))

    def update(self, state, items):
        x = self.dropout(self.item_embedding(items))[:, None, :]                 # one step
        _, h = self.gru(x, state.hidden.transpose(0, 1).contiguous())
        return GRUHidden(h.transpose(0, 1))

    def encode(self, users, history, mask):
        length = mask.sum(1)
        state = self.init_state(users).hidden
        rows = torch.nonzero(length > 0).flatten()
        if len(rows):
            packed = nn.utils.rnn.pack_padded_sequence(
                self.dropout(self.item_embedding(history[rows])), length[rows].cpu(),
                batch_first=True, enforce_sorted=False)
            _, h = self.gru(packed)                                                # h [layers, b, H]
            state = state.index_copy(0, rows, h.transpose(0, 1))
        return GRUHidden(state)

    def score_state(self, state, users, items=None):
        out = self.project(state.hidden[:, -1])                                           # top layer
        if items is None:
            return self.output(out)
        return (out[:, None, :] * self.item_embedding(items)).sum(-1)

    # -- training -----------------------------------------------------------------------------
    def prefix_states(self, history, mask):
        """The output after every position, one GRU pass: [B, L] → [B, L, dim]."""
        out, _ = self.gru(self.dropout(self.item_embedding(history)))
        return self.project(out)

    def output(self, states):
        return states @ self.item_embedding.weight.T

    def prefix_scores(self, users, history, mask, candidates):
        states = self.prefix_states(history, mask)
        return (states[:, :, None, :] * self.item_embedding(candidates)).sum(-1)
