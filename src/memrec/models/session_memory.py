"""Session memories: models whose memory is the session's own events (STAMP/STMP, the purchase
DMN, and the session-neighbourhood baselines, which read it without attention). The state a live session keeps is those events — an :class:`~memrec.memory.state.ItemWindow`
of the latest ``max_history`` — and every score re-reads them with the model's attention.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from ..memory.state import ItemWindow
from .capabilities import AnonymousScorer, HistoryScorer, StatefulScorer


class SessionWindow(StatefulScorer, HistoryScorer, AnonymousScorer):
    """The stateful contract of every model that scores a session from its own clicks alone
    (the session memories below, and the session-neighbourhood baselines): the state is the
    latest ``max_history`` clicks, an event appends one, a score reads the window.

    Subclasses implement :meth:`window_scores`.

    Shapes
    ------
    state: ItemWindow items long [B, W] (item ids or event tokens, oldest first), mask [B, W]
    """

    state_type = ItemWindow

    @abstractmethod
    def window_scores(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores of every item after a left-aligned, right-padded window [B, W] → [B, n_items]."""

    def init_state(self, users: torch.Tensor) -> ItemWindow:
        return ItemWindow.empty(len(users), device=users.device)

    def update(self, state: ItemWindow, items: torch.Tensor) -> ItemWindow:
        """One more event per row; beyond ``max_history`` the oldest leaves the memory."""
        return state.append(items, self.max_history)

    def encode(self, users, history, mask) -> ItemWindow:
        return ItemWindow.from_history(history, mask, self.max_history)

    def score_state(self, state: ItemWindow, users, items=None) -> torch.Tensor:
        scores = self.window_scores(state.items, state.mask)
        return scores if items is None else scores.gather(1, items)


class SessionMemory(SessionWindow):
    """The stateful contract for a memory of the session's events.

    Subclasses implement :meth:`session_state` (the representation after a window's last event)
    and :meth:`output` (scores of every item from it).
    """

    @abstractmethod
    def session_state(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, object]:
        """(representation [B, d], the read's attention) after the last event of each
        left-aligned, right-padded window history [B, W]."""

    @abstractmethod
    def output(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every item: states [..., d] → [..., n_items]."""

    def window_scores(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.session_state(items, mask)[0])


__all__ = ["SessionWindow", "SessionMemory"]
