"""The triple task: training a knowledge-graph embedding (TransE) with the shared trainer.

One epoch visits every training triple once, in an order drawn from the trainer's
``torch.Generator``, in batches of ``train.batch_size``; each triple gets ``train.n_negatives``
corrupted copies (:func:`corrupt`, drawn from the same generator, so a resumed run repeats an
uninterrupted one exactly). The loss is the margin ranking loss of Bordes et al. (2013), eq. (1),

    L = mean max(0, γ + d(h, r, t) − d(h', r, t'))     = losses.hinge(−d, −d', margin=γ)

and before every batch the model's constraint is applied (:meth:`constrain_`; TransE's
Algorithm 1, line 5: entity vectors renormalised to unit length). The trainer supplies the rest:
optimizer, epochs, validation (:class:`memrec.knowledge_runs.LinkPredictionValidator`), early
stopping, checkpoints and ``log.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..losses import hinge
from ..models.base import KnowledgeGraphEmbedding
from .config import TrainConfig
from .tasks import StatelessTask


def corrupt(triples: torch.Tensor, n_entities: int, n_negatives: int,
            generator: torch.Generator) -> torch.Tensor:
    """Corrupted copies of each triple: head or tail (probability ½ each) replaced by a uniform
    random entity (Bordes' "unif" corruption). triples long [B, 3] → [B, n_negatives, 3].

    A corruption may by chance be a true triple or equal the original (probability ~1/|E|); the
    paper does not filter them either.
    """
    B = len(triples)
    out = triples[:, None, :].expand(B, n_negatives, 3).clone()
    replace_head = torch.rand(B, n_negatives, generator=generator) < 0.5
    random_entity = torch.randint(n_entities, (B, n_negatives), generator=generator)
    out[..., 0] = torch.where(replace_head, random_entity, out[..., 0])
    out[..., 2] = torch.where(replace_head, out[..., 2], random_entity)
    return out


@dataclass(frozen=True)
class TripleBatch:
    """True triples and their corruptions.

    Shapes
    ------
    triples : long [B, 3] — (head, relation, tail)
    negatives : long [B, N, 3] — each triple with its head or its tail replaced
    """

    triples: torch.Tensor
    negatives: torch.Tensor

    @property
    def size(self) -> int:
        """Training examples in the batch (for loss averaging and examples/s)."""
        return len(self.triples)

    def row_examples(self) -> torch.Tensor:
        """Training examples per row (a distributed rank's share is a run of rows)."""
        return torch.ones(len(self.triples), dtype=torch.long)

    def take(self, rows: torch.Tensor) -> "TripleBatch":
        return TripleBatch(self.triples[rows], self.negatives[rows])


class TripleTask(StatelessTask):
    """Every training triple once per epoch with corrupted negatives; margin ranking loss.

    Parameters
    ----------
    triples : int64 [T, 3]
        The training triples (entity and relation indices).
    n_entities : int
        Entities a corruption draws from (the model's).
    config : TrainConfig
        ``batch_size``, ``n_negatives``, ``margin``; ``loss`` must be ``"hinge"`` and ``sampler``
        ``"uniform"`` (the only loss and corruption this task implements: another value is a
        configuration error, not a silent substitution).
    """

    def __init__(self, triples: np.ndarray, n_entities: int, config: TrainConfig):
        if config.loss != "hinge":
            raise ConfigError(f"train.loss = {config.loss!r}: knowledge-graph embeddings train with "
                              "the margin ranking loss (train.loss = \"hinge\")")
        if config.sampler != "uniform":
            raise ConfigError(f"train.sampler = {config.sampler!r}: triples are corrupted with "
                              "uniform random entities (train.sampler = \"uniform\")")
        if config.margin < 0:
            raise ConfigError(f"train.margin must be >= 0, got {config.margin}")
        if len(triples) == 0:
            raise ConfigError("no training triples")
        self.triples = torch.as_tensor(np.asarray(triples), dtype=torch.long)
        self.n_entities = n_entities
        self.n_examples = len(self.triples)
        self.batch_size = config.batch_size
        self.n_negatives = config.n_negatives
        self.margin = config.margin

    def batches(self, generator: torch.Generator) -> Iterator[TripleBatch]:
        order = torch.randperm(self.n_examples, generator=generator)
        for start in range(0, self.n_examples, self.batch_size):
            triples = self.triples[order[start:start + self.batch_size]]
            yield TripleBatch(triples, corrupt(triples, self.n_entities, self.n_negatives, generator))

    def loss(self, model: KnowledgeGraphEmbedding, batch: TripleBatch) -> torch.Tensor:
        # the trainer calls this right before the batch's forward and step: the constraint then
        # holds at the start of every batch, as Algorithm 1 (line 5) places it
        model.constrain_()
        positive = model.distance(*batch.triples.unbind(-1))                       # [B]
        negative = model.distance(*batch.negatives.unbind(-1))                     # [B, N]
        return hinge(-positive, -negative, margin=self.margin)     # max(0, γ + d − d'), eq. (1)


__all__ = ["corrupt", "TripleBatch", "TripleTask"]
