"""Train / valid / test splits and the fixed sampled-negative candidate sets stored with them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .interactions import DataError, Interactions


@dataclass(frozen=True, eq=False)
class Candidates:
    """Fixed sampled negatives for the sampled-ranking protocol.

    ``negatives[r]`` are the N negative item indices for user ``users[r]`` (never one of the
    user's own items in any part of the split).
    """

    users: np.ndarray      # int64 [U]
    negatives: np.ndarray  # int64 [U, N]


@dataclass(frozen=True, eq=False)
class NextItemCases:
    """Evaluation cases "given this history, predict the next item" (session protocol).

    Histories are CSR: ``items[indptr[c]:indptr[c+1]]`` is case ``c``'s history, oldest first.
    ``users[c]`` is the user index or -1 for anonymous sessions.
    """

    indptr: np.ndarray   # int64 [C+1]
    items: np.ndarray    # int64 [sum of history lengths]
    targets: np.ndarray  # int64 [C]
    users: np.ndarray    # int64 [C]

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True, eq=False)
class Split:
    """A dataset split. All parts share the same id maps.

    ``kind`` is one of ``loo``, ``temporal``, ``random``, ``session``, ``given``.
    ``valid`` may be ``None`` (no validation part). ``*_negatives`` are the fixed candidate sets
    of the sampled protocol, ``*_cases`` the next-item cases of the session protocol.
    """

    kind: str
    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    valid_negatives: Candidates | None = None
    test_negatives: Candidates | None = None
    valid_cases: NextItemCases | None = None
    test_cases: NextItemCases | None = None
