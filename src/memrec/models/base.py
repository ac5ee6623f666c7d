"""The model contract every memrec model follows.

A model is an ``nn.Module`` that *scores*: given a :class:`Query` (who is asking, and what they
did before) it returns one score per item. It never computes a loss, picks a device or reads a
config; the trainer and the evaluation protocols do that around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..data.interactions import Interactions


@dataclass(frozen=True)
class Query:
    """A batch of recommendation requests.

    Shapes
    ------
    users : long [B]
        User indices; -1 for an anonymous request (a live session).
    history : long [B, L]
        Each request's past items, oldest first, right-padded with 0.
    mask : bool [B, L]
        True where ``history`` holds a real item.

    Models that do not read histories (``needs_history = False``) get ``L == 0``.
    """

    users: torch.Tensor
    history: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def for_users(cls, users) -> "Query":
        users = torch.as_tensor(np.asarray(users), dtype=torch.long)
        empty = torch.zeros(len(users), 0, dtype=torch.long)
        return cls(users, empty, empty.bool())

    @classmethod
    def from_csr(cls, users, rows, indptr: np.ndarray, items: np.ndarray,
                 max_len: int | None = None) -> "Query":
        """Histories ``items[indptr[r]:indptr[r+1]]`` for each ``r`` in ``rows``, keeping the most
        recent ``max_len`` items. Vectorised: no Python loop over requests."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = indptr[rows], indptr[rows + 1]
        lengths = ends - starts
        if max_len is not None:
            lengths = np.minimum(lengths, max_len)
            starts = ends - lengths
        width = int(lengths.max()) if len(rows) else 0
        offsets = np.arange(width)
        mask = offsets[None, :] < lengths[:, None]
        positions = np.where(mask, starts[:, None] + offsets[None, :], 0)
        history = np.where(mask, items[positions] if len(items) else 0, 0)
        return cls(torch.as_tensor(np.asarray(users), dtype=torch.long),
                   torch.as_tensor(history, dtype=torch.long), torch.as_tensor(mask))


class Model(nn.Module):
    """Base class of every model: the scoring contract plus a default ``score_items``.

    Subclasses set the class attributes and implement :meth:`score_all`. Closed-form models
    (``trainable = False``) also implement :meth:`fit_closed_form`.
    """

    #: whether queries must carry the user's history (item-based and sequence models)
    needs_history: ClassVar[bool] = False
    #: whether the model has parameters learned by gradient descent
    trainable: ClassVar[bool] = True
    #: whether scores depend on a user index (False: the model can serve anonymous sessions)
    needs_user: ClassVar[bool] = True
    #: how it trains: "pairwise" (a user's items against sampled negatives) or "next_item"
    #: (every prefix of a sequence predicts its next item; the model has ``prefix_states``)
    task: ClassVar[str] = "pairwise"

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items

    def score_all(self, query: Query) -> torch.Tensor:
        """Scores for every item. query [B] → float [B, n_items]; higher is better."""
        raise NotImplementedError

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        """Scores for given candidates. items long [B, C] → float [B, C].

        The default gathers from :meth:`score_all`; models override it when scoring a few
        candidates is much cheaper than scoring all items (the training hot path).
        """
        return self.score_all(query).gather(1, items)

    #: what ``explain`` returns ids of ("users", "items" or "slots"); None: no explanations
    explains: ClassVar[str | None] = None

    #: buffers whose size depends on the data (e.g. CMN's neighbourhood lists); loading a
    #: checkpoint resizes them before copying
    data_buffers: ClassVar[tuple[str, ...]] = ()

    def prepare(self, train: Interactions) -> None:
        """Take data-derived, non-learned state from the training data before training
        (neighbourhoods, histories). Default: nothing."""

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups. Default: L2 ``weight_decay`` on every parameter; models
        whose paper regularises only some weights override this."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        for name in self.data_buffers:
            if name in state_dict and getattr(self, name).shape != state_dict[name].shape:
                setattr(self, name, torch.empty_like(state_dict[name]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def fit_closed_form(self, train: Interactions) -> None:
        """Fit a model that has no gradient training (popularity, neighbourhood, EASE^R)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient descent")


class KnowledgeGraphEmbedding(nn.Module):
    """Base of knowledge-graph embedding models (TransE): a second kind of model, not a recommender.

    It places a graph's entities and relations in one vector space so that a true triple
    (h, r, t) has a small distance; recommenders read the vectors (KSR's memory keys and item
    knowledge). It scores triples, not users × items, so the recommender contract
    (:class:`Model`, ``tests/test_contract.py``) does not apply. The constructor takes the graph's
    sizes ``(n_entities, n_relations)`` and keyword hyper-parameters; the registry records that
    (``ModelSpec.data == "knowledge_graph"``). :mod:`memrec.training.triples` trains it with the
    shared trainer; filtered link prediction is in :mod:`memrec.knowledge_runs`.

    Shapes
    ------
    distance: heads, relations, tails long [...] → float [...] (lower: more plausible)
    tail_distances: heads, relations long [B] → float [B, n_entities] (every entity as the tail)
    head_distances: relations, tails long [B] → float [B, n_entities] (every entity as the head)
    """

    #: trained by gradient descent (the trainer reads this, as for :class:`Model`)
    trainable: ClassVar[bool] = True
    #: how it trains: on knowledge-graph triples with corrupted negatives (training/triples.py)
    task: ClassVar[str] = "triples"

    @property
    def n_entities(self) -> int:
        raise NotImplementedError

    @property
    def n_relations(self) -> int:
        raise NotImplementedError

    def distance(self, heads: torch.Tensor, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tail_distances(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_distances(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def constrain_(self) -> None:
        """Project the parameters onto the model's constraint set; the triple task calls this
        before every mini-batch and link prediction before scoring. Default: no constraint."""

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: L2 ``weight_decay`` on every parameter (0 by default)."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]
