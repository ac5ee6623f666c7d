"""Training tasks: what one epoch's batches are and how a batch becomes a loss.

The trainer is task-agnostic: it asks the task for the epoch's batches (drawing all randomness
from the trainer's ``torch.Generator``, so a resumed run repeats an uninterrupted one exactly)
and for each batch's loss. Models only score; losses are the pure functions of
:mod:`memrec.losses`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch

from ..data.interactions import Interactions
from ..losses import PAIRWISE_LOSSES
from ..models.base import Query, Model
from ..sampling import NegativeSampler
from .config import TrainConfig


class Task(Protocol):
    n_examples: int

    def batches(self, generator: torch.Generator) -> Iterator[object]: ...

    def loss(self, model: Model, batch) -> torch.Tensor: ...


@dataclass(frozen=True)
class PairBatch:
    """users long [B], positives long [B], negatives long [B, N]"""

    users: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor


class PairwiseTask:
    """Each training interaction (u, i) once per epoch, in random order, with N sampled
    negatives j ∉ I(u); loss on (score(u, i), score(u, j))."""

    def __init__(self, train: Interactions, config: TrainConfig):
        self.users = torch.as_tensor(train.user, dtype=torch.long)
        self.items = torch.as_tensor(train.item, dtype=torch.long)
        self.n_examples = len(train)
        self.batch_size = config.batch_size
        self.n_negatives = config.n_negatives
        self.sampler = NegativeSampler(train, distribution=config.sampler,
                                       alpha=config.sampler_alpha,
                                       only_seen_items=config.sample_only_seen_items)
        loss = PAIRWISE_LOSSES[config.loss]
        self.loss_fn = partial(loss, margin=config.margin) if config.loss == "hinge" else loss

    def batches(self, generator: torch.Generator) -> Iterator[PairBatch]:
        order = torch.randperm(self.n_examples, generator=generator)
        for start in range(0, self.n_examples, self.batch_size):
            rows = order[start:start + self.batch_size]
            users = self.users[rows]
            yield PairBatch(users, self.items[rows],
                            self.sampler.sample(users, self.n_negatives, generator))

    def loss(self, model: Model, batch: PairBatch) -> torch.Tensor:
        candidates = torch.cat([batch.positives[:, None], batch.negatives], dim=1)
        scores = model.score_items(Query.for_users(batch.users), candidates)
        return self.loss_fn(scores[:, 0], scores[:, 1:])


def make_task(model: Model, train: Interactions, config: TrainConfig) -> Task:
    """The task a model trains with. Sequence and session models add their tasks here."""
    return PairwiseTask(train, config)
