"""The model contract every memrec model follows, and the capabilities a model declares.

A model is an ``nn.Module`` that *scores*: given a :class:`Query` (who is asking, and what they
did before) it returns one score per item. It never computes a loss, picks a device or reads a
config; the trainer and the evaluation protocols do that around it.

What else a model can do it declares by the classes it derives from (``models/capabilities.py``),
and the trainer, the evaluation protocols, the streaming protocol and the façade dispatch on
those declarations (``isinstance``) — never on ``hasattr`` or on strings.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from ..data.interactions import Interactions
from ..data.query import Query
from ..devices import module_device


class Model(nn.Module, metaclass=ABCMeta):
    """Base class of every recommender: scores for users × items.

    Subclasses implement :meth:`score_all`; closed-form models (``trainable = False``) also
    implement :meth:`fit_closed_form`. A query's ``history`` is filled only for models that
    declare :class:`~memrec.models.capabilities.HistoryScorer`; ``users`` is -1 (anonymous) only
    for :class:`~memrec.models.capabilities.AnonymousScorer`.
    """

    #: whether the model has parameters learned by gradient descent
    trainable: ClassVar[bool] = True

    #: the fitted model does not depend on ``train.seed`` (a closed form with no sampling): a
    #: tuning study trains its best settings once, and that run stands for every seed
    seed_free: ClassVar[bool] = False

    #: buffers whose size depends on the data (e.g. CMN's neighbourhood lists); loading a
    #: checkpoint resizes them before copying
    data_buffers: ClassVar[tuple[str, ...]] = ()

    #: whether this instance reads event times: its queries then carry ``Query.times`` and its
    #: ``prefix_scores`` / ``encode`` / ``update`` take ``times=`` (DEMN on timestamped data:
    #: the training data decide, so a model overrides this per instance)
    reads_times: bool = False

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (see :func:`memrec.devices.module_device`). Models
        create tensors here, never choosing a device."""
        return module_device(self)

    @abstractmethod
    def score_all(self, query: Query) -> torch.Tensor:
        """Scores for every item. query [B] → float [B, n_items]; higher is better."""

    def score_items(self, query: Query, items: torch.Tensor) -> torch.Tensor:
        """Scores for given candidates. items long [B, C] → float [B, C].

        The default gathers from :meth:`score_all`; models override it when scoring a few
        candidates is much cheaper than scoring all items (the training hot path).
        """
        return self.score_all(query).gather(1, items)

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
    (``ModelSpec.data``, from the class). :mod:`memrec.training.triples` trains it with the
    shared trainer; filtered link prediction is in :mod:`memrec.knowledge_runs`.

    Shapes
    ------
    distance: heads, relations, tails long [...] → float [...] (lower: more plausible)
    tail_distances: heads, relations long [B] → float [B, n_entities] (every entity as the tail)
    head_distances: relations, tails long [B] → float [B, n_entities] (every entity as the head)
    """

    #: trained by gradient descent (the trainer reads this, as for :class:`Model`)
    trainable: ClassVar[bool] = True
    #: a graph has no event times (the trainer asks every model it fits)
    reads_times: ClassVar[bool] = False

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
