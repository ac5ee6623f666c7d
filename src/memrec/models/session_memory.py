"""Session memories: models whose memory is the session's own events (STAMP/STMP, the purchase
DMN). The state a live session keeps is those events — an :class:`~memrec.memory.state.ItemWindow`
of the latest ``max_history`` — and every score re-reads them with the model's attention.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from ..memory.state import ItemWindow
from .capabilities import AnonymousScorer, HistoryScorer, StatefulScorer


class SessionMemory(StatefulScorer, HistoryScorer, AnonymousScorer):
    """The stateful contract for a memory of the session's events.

    Subclasses implement :meth:`session_state` (the representation after a window's last event)
    and :meth:`output` (scores of every item from it).

    Shapes
    ------
    state: ItemWindow items long [B, W] (item ids or event tokens, oldest first), mask [B, W]
    """

    state_type = ItemWindow

    @abstractmethod
    def session_state(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, object]:
        """(representation [B, d], the read's attention) after the last event of each
        left-aligned, right-padded window history [B, W]."""

    @abstractmethod
    def output(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every item: states [..., d] → [..., n_items]."""

    def init_state(self, users: torch.Tensor) -> ItemWindow:
        return ItemWindow.empty(len(users), device=users.device)

    def update(self, state: ItemWindow, items: torch.Tensor) -> ItemWindow:
        """One more event per row; beyond ``max_history`` the oldest leaves the memory."""
        return state.append(items, self.max_history)

    def encode(self, users, history, mask) -> ItemWindow:
        return ItemWindow.from_history(history, mask, self.max_history)

    def score_state(self, state: ItemWindow, users, items=None) -> torch.Tensor:
        scores = self.output(self.session_state(state.items, state.mask)[0])
        return scores if items is None else scores.gather(1, items)


__all__ = ["SessionMemory"]
