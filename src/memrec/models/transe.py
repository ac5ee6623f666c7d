"""TransE: relations as translations between entity embeddings.

Bordes, Usunier, Garcia-Durán, Weston, Yakhnenko. "Translating Embeddings for Modeling
Multi-relational Data." NIPS 2013. KSR (Huang et al., SIGIR 2018) pre-trains its knowledge
vectors with TransE (through OpenKE); ``models/ksr.py`` loads what this model exports.

A true triple (h, r, t) should satisfy e_h + r ≈ e_t:

    d(h, r, t) = ‖e_h + r − e_t‖_p,  p = 1 or 2                           # energy, paper eq. (1)
    L = Σ max(0, γ + d(h, r, t) − d(h', r, t'))                           # margin ranking, eq. (1)

where (h', r, t') is the triple with its head *or* its tail replaced by a random entity
(:func:`memrec.training.triples.corrupt`, Bordes' "unif" corruption: head or tail with
probability ½). The loss is :func:`memrec.losses.hinge` on scores −d: max(0, γ − (−d) + (−d')) is
the same expression.

Normalisation (Algorithm 1 of the paper): relation vectors are L2-normalised once at
initialisation; entity vectors are renormalised to unit L2 norm before every mini-batch
(:meth:`TransE.normalize_entities_`, the model's :meth:`constrain_`, which the triple task calls
before every batch), which keeps the loss from being lowered by inflating norms.
Initialisation: uniform(−6/√d, 6/√d) for both tables (Algorithm 1).

The model scores, it does not train itself: it is registered as ``"transe"`` (a
:class:`~memrec.models.base.KnowledgeGraphEmbedding`, built from the graph's sizes), the shared
trainer fits it with :class:`memrec.training.triples.TripleTask`, and filtered link prediction and
vector export are in :mod:`memrec.knowledge_runs`.

Deviations from the paper: the optimiser is the trainer's (Adam by default, the paper used
plain SGD; ``optimizer = "sgd"`` is available); losses are averaged over the batch, not summed
(a rescaling of the learning rate only).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import KnowledgeGraphEmbedding


class TransE(KnowledgeGraphEmbedding):
    """TransE over ``n_entities`` entities and ``n_relations`` relations.

    Parameters
    ----------
    n_entities, n_relations : int
    dim : int
        Embedding size k.
    norm : 1 | 2
        The distance ‖·‖_p of the energy (the paper tunes both; L1 was best on FB15k).

    Shapes
    ------
    distance: heads, relations, tails long [...] → [...]
    tail_distances: heads, relations long [B] → [B, n_entities] (every entity as the tail)
    head_distances: relations, tails long [B] → [B, n_entities] (every entity as the head)

    Example
    -------
    >>> model = TransE(5, 2, dim=8)
    >>> model.tail_distances(torch.tensor([0, 4]), torch.tensor([1, 0])).shape
    torch.Size([2, 5])
    """

    def __init__(self, n_entities: int, n_relations: int, *, dim: int = 64, norm: int = 1):
        super().__init__()
        if norm not in (1, 2):
            raise ValueError(f"norm must be 1 or 2, got {norm!r}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim!r}")
        if n_entities < 2 or n_relations < 1:
            raise ValueError(f"TransE needs at least 2 entities and 1 relation, got "
                             f"{n_entities} and {n_relations}")
        self.norm = norm
        self.entity = nn.Embedding(n_entities, dim)
        self.relation = nn.Embedding(n_relations, dim)
        bound = 6 / math.sqrt(dim)                                  # Algorithm 1, lines 1–2
        nn.init.uniform_(self.entity.weight, -bound, bound)
        nn.init.uniform_(self.relation.weight, -bound, bound)
        with torch.no_grad():                                       # Algorithm 1, line 3: ℓ ← ℓ/‖ℓ‖
            self.relation.weight.div_(self.relation.weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @property
    def n_entities(self) -> int:
        return self.entity.num_embeddings

    @property
    def n_relations(self) -> int:
        return self.relation.num_embeddings

    @torch.no_grad()
    def normalize_entities_(self) -> None:
        """e ← e / ‖e‖₂ for every entity (Algorithm 1, line 5: before each mini-batch)."""
        self.entity.weight.div_(self.entity.weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def constrain_(self) -> None:
        """Algorithm 1's constraint: unit-norm entity vectors (:meth:`normalize_entities_`)."""
        self.normalize_entities_()

    def distance(self, heads: torch.Tensor, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """d(h, r, t) = ‖e_h + r − e_t‖_p (eq. 1's energy)."""
        translated = self.entity(heads) + self.relation(relations) - self.entity(tails)
        return translated.norm(p=self.norm, dim=-1)

    def tail_distances(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """d(h, r, e) for every entity e: ‖(e_h + r) − e_e‖_p, one ``cdist``."""
        return torch.cdist(self.entity(heads) + self.relation(relations), self.entity.weight, p=self.norm)

    def head_distances(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """d(e, r, t) for every entity e: ‖e_e − (e_t − r)‖_p (the same norm, rearranged)."""
        return torch.cdist(self.entity(tails) - self.relation(relations), self.entity.weight, p=self.norm)


__all__ = ["TransE"]
