"""STAMP and STMP: short-term attention/memory priority for session-based recommendation.

Liu, Zeng, Mokhosi, Zhang. "STAMP: Short-Term Attention/Memory Priority Model for Session-based
Recommendation." KDD 2018. Official TensorFlow code: ``uestcnlp/STAMP``.

The session's clicks are the memory. Two summaries of it form the query: the session mean
m_s (general interest) and the last click m_t (current interest). An attention network scores
every click against both; the attention-weighted sum m_a is the long-term read. Two one-layer
MLP cells turn m_a and m_t into h_s and h_t, and every item is scored by the trilinear product
⟨h_s, h_t, x_i⟩. STMP drops the attention (m_a = m_s).

Equation map (paper numbering):

* eq. (7)  α_i = W_0 σ(W_1 x_i + W_2 x_t + W_3 m_s + b_a)   → ``AdditiveScore`` (sigmoid) over
  the query concat(x_t, m_s): one Linear over the concatenation is W_2 x_t + W_3 m_s
* eq. (8)  m_a = Σ_i α_i x_i                                 → ``weighted_read`` (unnormalised)
* eq. (9)  h_s = tanh(W_s m_a + b_s), h_t = tanh(W_t m_t + b_t)
* eq. (10) z_i = ⟨h_s, h_t, x_i⟩                            → ``(h_s * h_t) @ E.T``

The state a live session keeps is its clicks (:class:`~memrec.memory.state.ItemWindow`, the latest
``max_history`` of them): a click appends to it, a score reads it as above.

Every prefix of a session is a prediction point. :meth:`STAMP.prefix_states` computes them all in
one causal pass: m_s for all prefixes by a cumulative sum, attention for all prefixes with a
lower-triangular mask (O(L²d) per session), so training never runs one forward per prefix.

Copy read (``repeat = True``; off by default, so the shipped results do not change)
------------------------------------------------------------------------------------
STAMP can only recommend an item through its catalogue embedding, yet a quarter of next clicks
are re-clicks. With the copy read (``memory/read.py``, :func:`~memrec.memory.read.copy_mixture`)
the attention α of eq. (7), normalised by a softmax over the clicks, becomes a distribution c over
the clicked items (summed over repeated clicks), mixed with the catalogue softmax by a learned gate
on the representation, g = σ(w·(h_s ⊙ h_t) + b) (RepeatNet's repeat/explore decision, Ren et al.
2019): p = (1 − g)·softmax(z) + g·c. Scores are then log p, and training minimises −log p of the
target (``outputs_log_probabilities``). STMP has no attention: its copy weighs the clicks alike.

Deviations from the paper
-------------------------
``variant="official"`` (default) follows the authors' code where it differs from the paper:
m_a = Σ α_i x_i **+ m_s**; no biases (b_a, b_s, b_t); looked-up click embeddings are clipped to
L2 norm ``max_norm`` (TF ``embedding_lookup(max_norm=...)``: the lookup, not the table; the
output layer scores against the raw table). ``variant="paper"`` has the biases, no residual
m_s and no clipping. Neither applies the sigmoid the paper writes before the softmax (its
eq. (11) as summarised in the survey): the official code feeds z straight into the softmax
cross-entropy, and so does RecBole. Padding is masked everywhere (RecBole's port sums and
attends over padded positions); a padded position never changes a score.
"""

from __future__ import annotations

import torch
from torch import nn

from ..memory.state import ItemWindow
from ..memory.read import AdditiveScore, CopyRead, masked_softmax, prefix_mask, repeat_share, weighted_read
from .base import Query
from .capabilities import (MemoryEntry, NextItemPairwise, NextItemSoftmax, StateExplainer, mode_entries,
                           ranked_entries)
from .session_memory import SessionMemory

VARIANTS = ("official", "paper")


def clip_norm(x: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale rows with L2 norm above ``max_norm`` down to it (a functional TF max_norm lookup)."""
    norm = x.norm(dim=-1, keepdim=True)
    return x * torch.clamp(max_norm / norm.clamp_min(1e-12), max=1.0)


def _windows(t: torch.Tensor, window: int) -> torch.Tensor:
    """At each position p the rows p − window + 1 … p, zeros before the sequence's start.
    [B, L, *rest] → [B, L, window, *rest]."""
    padded = nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (window - 1, 0))
    return padded.unfold(1, window, 1).movedim(-1, 2)


def _running_mean(x: torch.Tensor, mask: torch.Tensor, window: int | None) -> torch.Tensor:
    """Mean of the valid rows of x up to each position (of the last ``window`` ones).
    x [B, L, d] (zero where masked), mask [B, L] → [B, L, d]."""
    total, count = x.cumsum(1), mask.cumsum(1)
    if window is not None and window < x.shape[1]:
        total = total - nn.functional.pad(total, (0, 0, window, 0))[:, :-window]
        count = count - nn.functional.pad(count, (window, 0))[:, :-window]
    return total / count.clamp_min(1)[..., None].to(x.dtype)


class ShortTermMemory(SessionMemory, NextItemSoftmax, NextItemPairwise):
    """What STAMP and STMP share: the session's clicks as the memory, the last click and the
    session mean as the query, the trilinear output (STMP when ``attention=False``).

    Parameters
    ----------
    n_users, n_items : int
        ``n_users`` is unused: scores depend on the session's clicks only.
    dim : int
        Embedding and hidden size d (100 in the paper).
    attention : bool
        False gives STMP: m_a = m_s.
    variant : "official" | "paper"
        See "Deviations from the paper".
    max_norm : float
        Click-embedding norm clip of the official variant (1.0 for Yoochoose, 1.5 Diginetica).
    embed_std, weight_std : float
        Normal init std of the item table and of the dense weights (0.002 / 0.05, as the code).
    max_history : int or None
        Keep only the most recent clicks of a long session (None: the whole session, as STAMP).
    repeat : bool
        Add the copy read (``memory/read.py``): the attention over the clicks, normalised by a
        softmax, becomes a distribution over the clicked items, mixed with the catalogue softmax
        by a learned gate; scores are then log-probabilities (see "Copy read" above).

    Shapes
    ------
    state: :class:`~memrec.memory.state.ItemWindow` of the latest ``max_history`` clicks
    score_all: history [B, L], mask [B, L] → [B, n_items]
    prefix_states: history [B, L], mask [B, L] → [B, L, d] (the representation after each click)

    Example
    -------
    >>> m = STAMP(1, 5, dim=4)
    >>> q = Query(torch.tensor([-1]), torch.tensor([[1, 3]]), torch.tensor([[True, True]]))
    >>> m.score_all(q).shape
    torch.Size([1, 5])
    """

    def __init__(self, n_users: int, n_items: int, *, dim: int = 100, attention: bool = True,
                 variant: str = "official", max_norm: float = 1.0, embed_std: float = 0.002,
                 weight_std: float = 0.05, max_history: int | None = None, repeat: bool = False):
        super().__init__(n_users, n_items)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be at least 1 (or None), got {max_history}")
        self.attention, self.variant, self.max_norm = attention, variant, max_norm
        self.max_history = max_history
        biased = variant == "paper"
        self.item_embedding = nn.Embedding(n_items, dim)
        self.attend = AdditiveScore(2 * dim, dim, dim, activation="sigmoid", bias=biased)
        self.session_cell = nn.Linear(dim, dim, bias=biased)   # W_s, b_s
        self.current_cell = nn.Linear(dim, dim, bias=biased)   # W_t, b_t
        nn.init.normal_(self.item_embedding.weight, std=embed_std)
        for name, p in self.named_parameters():
            if name != "item_embedding.weight":
                nn.init.normal_(p, std=weight_std) if p.dim() > 1 else nn.init.zeros_(p)
        self.repeat = self.outputs_log_probabilities = repeat
        if repeat:      # built after the others' init: their random draws stay those of repeat=False
            self.copy = CopyRead(dim)    # gate g = σ(w·(h_s ⊙ h_t) + b): repeat vs explore
            nn.init.normal_(self.copy.gate.weight, std=weight_std)
            nn.init.zeros_(self.copy.gate.bias)

    # -- the model ----------------------------------------------------------------------------
    def _clicks(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.item_embedding(history)
        if self.variant == "official":
            x = clip_norm(x, self.max_norm)
        return x * mask[..., None]

    def _represent(self, x: torch.Tensor, m_s: torch.Tensor, m_t: torch.Tensor,
                   readable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_s ⊙ h_t for P query positions. x [B, L, d] clicks (or [B, P, W, d]: each position's
        own window), m_s / m_t [B, P, d], readable bool [B, P, L] (or [B, P, W]: which clicks each
        position may attend to) → ([B, P, d], α [B, P, L] or [B, P, W])."""
        if self.attention:
            query = torch.cat([m_t, m_s], dim=-1)                                  # eq. (7)
            if x.dim() == 4:                    # each position's own window of clicks [B, P, W, d]
                alpha = self.attend(query[:, :, None, :], x) * readable
                m_a = torch.einsum("bpw,bpwd->bpd", alpha, x)                      # eq. (8)
            else:
                scores = self.attend(query[:, :, None, :], x[:, None, :, :])
                m_a, alpha = weighted_read(scores, x, readable)                    # eq. (8)
            if self.variant == "official":
                m_a = m_a + m_s
        else:
            alpha = torch.zeros(readable.shape, dtype=x.dtype, device=x.device)
            m_a = m_s
        h_s = torch.tanh(self.session_cell(m_a))                                   # eq. (9)
        h_t = torch.tanh(self.current_cell(m_t))
        return h_s * h_t, alpha

    def prefix_states(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The representation after every click, all prefixes in one causal pass. With
        ``max_history`` W shorter than the batch's sequences, each position attends over its own
        window of W clicks ([B, L, W, d]) instead of masking an [B, L, L, d] attention: the same
        numbers, at W/L of the cost."""
        x = self._clicks(history, mask)
        m_s = _running_mean(x, mask, self.max_history)
        window = self.max_history
        if window is None or window >= history.shape[1]:
            return self._represent(x, m_s, x, prefix_mask(mask, window))[0]
        readable = _windows(mask.to(x.dtype), window).bool() & mask[:, :, None]
        return self._represent(_windows(x, window), m_s, x, readable)[0]

    def session_state(self, history: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The representation after the last click of each row, and its attention:
        ([B, d], α [B, L]). history is left-aligned and right-padded (a window's layout) and
        holds no more than ``max_history`` clicks."""
        x = self._clicks(history, mask)
        length = mask.sum(1)
        if (length == 0).any():
            raise ValueError("STAMP needs at least one click per session")
        m_s = x.sum(1) / length[:, None].to(x.dtype)
        m_t = x[torch.arange(len(x), device=x.device), length - 1]
        state, alpha = self._represent(x, m_s[:, None], m_t[:, None], mask[:, None, :])
        return state[:, 0], alpha[:, 0]

    def output(self, states: torch.Tensor) -> torch.Tensor:
        """Trilinear scores of every item, eq. (10). states [..., d] → [..., n_items]."""
        return states @ self.item_embedding.weight.T

    def prefix_scores(self, users, history, mask, candidates):
        """Eq. (10) for sampled candidates [B, L, C] only: what a sampled softmax trains on
        when the catalogue is too large for the full one (``train.loss = "sampled_softmax"``).
        With the copy read, the mixture's log-probabilities at the candidates, as ``score_items``
        gives (no sampled loss trains such a model: ``make_task`` refuses it)."""
        if self.repeat:
            scores = candidates.new_zeros(candidates.shape, dtype=self.item_embedding.weight.dtype)
            scores[mask] = self.prefix_outputs(history, mask, mask).gather(1, candidates[mask])
            return scores
        states = self.prefix_states(history, mask)
        return (states[:, :, None, :] * self.item_embedding(candidates)).sum(-1)

    # -- the copy read (repeat = True) ------------------------------------------------------------
    def copy_weights(self, alpha: torch.Tensor, readable: torch.Tensor) -> torch.Tensor:
        """The attention α of eq. (7) as a distribution over the readable clicks (STAMP's α is
        unnormalised; STMP has none, so its clicks weigh alike). [P, L] → [P, L]."""
        return masked_softmax(alpha, readable)

    def _mixture(self, logits, states, alpha, clicks, readable) -> torch.Tensor:
        """log p of the repeat/explore mixture: logits [P, n_items], states [P, d], α / clicks /
        readable [P, L] → [P, n_items]."""
        return self.copy(logits, states, self.copy_weights(alpha, readable), clicks, readable)

    def prefix_outputs(self, history: torch.Tensor, mask: torch.Tensor,
                       positions: torch.Tensor) -> torch.Tensor:
        """Scores after the selected prefixes (log-probabilities with the copy read, each prefix
        copying from its own readable clicks)."""
        if not self.repeat:
            return super().prefix_outputs(history, mask, positions)
        x = self._clicks(history, mask)
        readable = prefix_mask(mask, self.max_history)
        states, alpha = self._represent(x, _running_mean(x, mask, self.max_history), x, readable)
        states = states[positions]
        rows = positions.nonzero()[:, 0]                     # row-major, as boolean indexing
        return self._mixture(self.output(states), states, alpha[positions], history[rows], readable[positions])

    def window_scores(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        state, alpha = self.session_state(items, mask)
        logits = self.output(state)
        return self._mixture(logits, state, alpha, items, mask) if self.repeat else logits


class STAMP(ShortTermMemory, StateExplainer):
    """STAMP: short-term attention/memory priority (see :class:`ShortTermMemory`; ``attention``
    False is STMP's ablation, registered as ``stmp``)."""

    explains = "click"

    @torch.no_grad()
    def explain_state(self, window: ItemWindow, users: torch.Tensor,
                      items: torch.Tensor) -> list[list[MemoryEntry]]:
        """The attention α each click of the session got (eq. (7); the clicks the window
        keeps). It depends on the session only, so every item gets the same entries.

        With the copy read, each item's entries start with how it was recommended: a "repeat"
        entry (id: the window slot of the item's latest click, weight: the share of its
        probability the copy gave) when the copy gave at least half of it, else an "explore"
        entry (id -1, weight: the catalogue's share)."""
        state, alpha = self.session_state(window.items, window.mask)
        clicks = window.mask[0]
        ranked = ranked_entries("click", window.items[0][clicks], alpha[0][clicks])
        if not self.repeat:
            return [ranked for _ in range(len(items))]
        log_p = self._mixture(self.output(state), state, alpha, window.items, window.mask)
        weights = self.copy_weights(alpha, window.mask)
        share = repeat_share(log_p, weights, window.items, window.mask, self.copy.gate_logit(state))[0, items]
        return [[mode, *ranked] for mode in mode_entries(share, window.items[0], clicks, items)]


class STMP(ShortTermMemory):
    """STMP, the paper's ablation: STAMP without the attention network (m_a = m_s)."""

    def __init__(self, n_users: int, n_items: int, *, dim: int = 100, variant: str = "official",
                 max_norm: float = 1.0, embed_std: float = 0.002, weight_std: float = 0.05,
                 max_history: int | None = None, repeat: bool = False):
        super().__init__(n_users, n_items, dim=dim, attention=False, variant=variant,
                         max_norm=max_norm, embed_std=embed_std, weight_std=weight_std,
                         max_history=max_history, repeat=repeat)


__all__ = ["ShortTermMemory", "STAMP", "STMP", "clip_norm"]
