"""Training tasks: what one epoch's batches are and how a batch becomes a loss.

The trainer is task-agnostic: it asks the task for the epoch's batches (drawing all randomness
from the trainer's ``torch.Generator``, so a resumed run repeats an uninterrupted one exactly)
and for each batch's loss. Models only score; losses are the pure functions of
:mod:`memrec.losses`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..data.interactions import Interactions
from ..losses import PAIRWISE_LOSSES, negative_log_likelihood, pairwise_loss, softmax_cross_entropy
from ..errors import ConfigError
from ..models.base import Query, Model
from ..models.capabilities import (HistoryScorer, NextItemPairwise, NextItemSoftmax, NextItemUserSoftmax,
                                   PurchasePredictor, StreamLearner)
from ..sampling import NegativeSampler
from .config import TrainConfig
from .stream import StreamTask


class Task(Protocol):
    """What the trainer asks of a task. ``state_dict`` is what the task carries from epoch to
    epoch beyond the trainer's generator (NMRN's stream task: its epoch counter and adversarial
    generator), checkpointed with the model: tensors and plain values only (the checkpoint loads
    with ``weights_only=True``)."""

    n_examples: int

    def batches(self, generator: torch.Generator) -> Iterator[object]: ...

    def loss(self, model: Model, batch) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class StatelessTask:
    """A task whose only randomness is the trainer's generator: nothing of its own to save."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"the checkpoint holds task state ({', '.join(state)}) that "
                             f"{type(self).__name__} does not have")


@dataclass(frozen=True)
class PairBatch:
    """users long [B], positives long [B], negatives long [B, N]"""

    users: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor

    @property
    def size(self) -> int:
        """Training examples in the batch (for loss averaging and examples/s)."""
        return len(self.users)

    def row_examples(self) -> torch.Tensor:
        """Training examples per row (a distributed rank's share is a run of rows)."""
        return torch.ones(len(self.users), dtype=torch.long)

    def take(self, rows: torch.Tensor) -> "PairBatch":
        return PairBatch(self.users[rows], self.positives[rows], self.negatives[rows])


class PairwiseTask(StatelessTask):
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
        self.loss_fn = CandidateLoss(config, self.sampler)

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
        return self.loss_fn(scores, candidates)


@dataclass(frozen=True)
class SequenceBatch:
    """Whole sequences, right-padded: history long [B, L], mask bool [B, L]; targets long [P],
    the next item of every position that has one, in row-major order of ``mask[:, 1:]``;
    users long [B] (the sequence's user); negatives long [P, N] for pairwise losses, else None;
    times float64 [B, L], the events' timestamps for a model that reads them (padding NaN), else None."""

    history: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor | None = None
    negatives: torch.Tensor | None = None
    times: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.targets)

    def row_examples(self) -> torch.Tensor:
        return self.mask[:, 1:].sum(1)

    def take(self, rows: torch.Tensor) -> "SequenceBatch":
        kept = _targets_of_rows(self.row_examples(), rows)
        return SequenceBatch(self.history[rows], self.mask[rows], self.targets[kept],
                             None if self.users is None else self.users[rows],
                             None if self.negatives is None else self.negatives[kept],
                             None if self.times is None else self.times[rows])


def _batch_starts(targets: np.ndarray, window_of: np.ndarray, batch_size: int) -> np.ndarray:
    """Where batches of about ``batch_size`` targets start, counting afresh in every window: a
    batch never spans two windows, or a window's longest sequences (its last batch) would share
    one batch, and its padding, with the next window's shortest."""
    ends = np.cumsum(targets)
    first = np.flatnonzero(np.r_[True, window_of[1:] != window_of[:-1]])
    before = np.repeat(ends[first] - targets[first], np.diff(np.r_[first, len(targets)]))
    local = (ends - before - 1) // batch_size
    return np.flatnonzero((local[1:] != local[:-1]) | (window_of[1:] != window_of[:-1])) + 1


def _targets_of_rows(row_examples: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """bool [P]: the targets (row-major, ``row_examples[r]`` of them per row) that belong to
    ``rows``."""
    owner = torch.repeat_interleave(torch.arange(len(row_examples)), row_examples)
    return torch.isin(owner, rows)


class NextItemTask(StatelessTask):
    """Every prefix of every training sequence predicts its next item (SR-GNN/STAMP's prefix
    augmentation), with a full softmax cross-entropy over all items (``train.loss = "softmax"``,
    :class:`NextItemSoftmax` models) or a pairwise loss against N negatives sampled
    outside the sequence's user's training items (:class:`NextItemPairwise` models: RUM, FPMC).

    A sequence is a user's chronological history (for session files every session is a
    pseudo-user). Batches hold whole sequences and about ``batch_size`` prediction targets; the
    model computes all prefixes of a sequence in one causal pass (``prefix_states``), so no future
    item ever enters a prefix and no prefix costs a forward of its own. Sequences of similar
    length share a batch (sorted by length inside random windows of ``BUCKET_BATCHES`` batches),
    which keeps padding, and the O(L²) attention some models have, small.
    """

    BUCKET_BATCHES = 50

    def __init__(self, train: Interactions, config: TrainConfig, with_times: bool = False):
        indptr, items = train.sequences()
        lengths = np.diff(indptr)
        self.rows = np.flatnonzero(lengths >= 2)
        if len(self.rows) == 0:
            raise ConfigError("next-item training needs sequences of at least 2 events; "
                              "the training data has none")
        self.indptr, self.items = indptr, items
        # the events' times, only for a model that reads them (float64, which not every device has)
        self.times = train.sequence_times() if with_times else None
        self.n_targets = lengths[self.rows] - 1
        self.n_examples = int(self.n_targets.sum())
        self.batch_size = config.batch_size
        self.softmax = config.loss == "softmax"
        if not self.softmax:
            self.n_negatives = config.n_negatives
            self.sampler = NegativeSampler(train, distribution=config.sampler,
                                           alpha=config.sampler_alpha,
                                           only_seen_items=config.sample_only_seen_items)
            self.loss_fn = CandidateLoss(config, self.sampler)

    def _batch_rows(self, generator: torch.Generator) -> list[np.ndarray]:
        order = torch.randperm(len(self.rows), generator=generator).numpy()
        window = max(1, int(self.BUCKET_BATCHES * self.batch_size / self.n_targets.mean()))
        window_of = np.arange(len(order)) // window          # stays sorted: the primary key
        order = order[np.lexsort((self.n_targets[order], window_of))]
        batches = np.split(order, _batch_starts(self.n_targets[order], window_of, self.batch_size))
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        return [self.rows[batches[b]] for b in shuffle]

    def batches(self, generator: torch.Generator) -> Iterator[SequenceBatch]:
        for rows in self._batch_rows(generator):
            q = Query.from_csr(rows, rows, self.indptr, self.items, times=self.times)   # row r = user r
            targets = q.history[:, 1:][q.mask[:, 1:]]
            negatives = None
            if not self.softmax:
                owners = q.users.repeat_interleave(q.mask[:, 1:].sum(1))       # each target's user
                negatives = self.sampler.sample(owners, self.n_negatives, generator)
            yield SequenceBatch(q.history, q.mask, targets, q.users, negatives, q.times)

    def loss(self, model: Model, batch: SequenceBatch) -> torch.Tensor:
        predicts = batch.mask[:, 1:]                                           # position t has a next item
        clock = {"times": batch.times} if model.reads_times else {}
        if self.softmax:
            positions = torch.nn.functional.pad(predicts, (0, 1))              # the last has none
            if isinstance(model, NextItemUserSoftmax):
                scores = model.prefix_user_outputs(batch.users, batch.history, batch.mask, positions, **clock)
                return softmax_cross_entropy(scores, batch.targets)
            scores = model.prefix_outputs(batch.history, batch.mask, positions)
            if model.outputs_log_probabilities:                                # a mixture: its NLL
                return negative_log_likelihood(scores, batch.targets)
            return softmax_cross_entropy(scores, batch.targets)
        P = len(batch.targets)
        candidates = batch.history.new_zeros(*batch.history.shape, 1 + self.n_negatives)
        candidates[:, :-1][predicts] = torch.cat([batch.targets[:, None], batch.negatives], dim=1)
        scores = model.prefix_scores(batch.users, batch.history, batch.mask, candidates, **clock)
        scores = scores[:, :-1][predicts].reshape(P, -1)
        return self.loss_fn(scores, candidates[:, :-1][predicts])


@dataclass(frozen=True)
class PurchaseBatch:
    """Whole typed sessions as history tokens long [B, L] (type · n_items + item), mask bool
    [B, L]; ``targets`` long [P], the items bought at the positions where ``buys`` [B, L] is True
    (position t + 1 is a purchase: the state after event t predicts it); ``users`` [B];
    ``negatives`` [P, N] for pairwise losses, else None."""

    history: torch.Tensor
    mask: torch.Tensor
    buys: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor
    negatives: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.targets)

    def row_examples(self) -> torch.Tensor:
        return self.buys.sum(1)

    def take(self, rows: torch.Tensor) -> "PurchaseBatch":
        kept = _targets_of_rows(self.row_examples(), rows)
        return PurchaseBatch(self.history[rows], self.mask[rows], self.buys[rows], self.targets[kept],
                             self.users[rows], None if self.negatives is None else self.negatives[kept])


class PurchaseTask(StatelessTask):
    """Next-purchase training on typed event sessions (the purchase DMN, ``target="purchase"``).

    The event type of each row is ``train.rating`` (codes of
    :data:`memrec.data.synthetic.EVENT_TYPES`); sessions are ``train.session`` (else users), in
    time order. Every purchase event that has at least one event before it is a target; the
    model's state after the event just before it — a causal pass over the whole session, so the
    purchase and everything after it never enter that state — is scored against all items
    (``train.loss = "softmax"``: the negative log-likelihood when the scores are log-probabilities
    already, the DMN's copy read) or N sampled negatives (``sampled_softmax`` or a pairwise loss).
    """

    def __init__(self, train: Interactions, config: TrainConfig, n_items: int, event_types: int,
                 purchase_type: int):
        if train.rating is None:
            raise ConfigError("purchase training needs typed events: the event type code of each "
                              "row in the rating column (0 view, 1 cart, 2 purchase)")
        types = train.rating.astype(np.int64)
        if (types != train.rating).any() or types.min() < 0 or types.max() >= event_types:
            raise ConfigError(f"event types must be integer codes 0..{event_types - 1} in the "
                              "rating column")
        key = train.session if train.session is not None else train.user
        order = np.lexsort((np.arange(len(train)),
                            train.timestamp if train.timestamp is not None else np.zeros(len(train)),
                            key))
        key, tokens = key[order], types[order] * n_items + train.item[order].astype(np.int64)
        bought = types[order] == purchase_type
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        self.indptr = np.r_[starts, len(key)].astype(np.int64)
        self.tokens, self.items, self.bought = tokens, train.item[order].astype(np.int64), bought
        self.owner = train.user[order][starts].astype(np.int64)
        first = np.zeros(len(key), bool)
        first[starts] = True
        n_targets = np.add.reduceat((bought & ~first).astype(np.int64), starts)
        self.rows = np.flatnonzero(n_targets > 0)
        if len(self.rows) == 0:
            raise ConfigError("purchase training needs sessions with a purchase after at least "
                              "one other event; the training data has none")
        self.n_targets = n_targets[self.rows]
        self.n_examples = int(self.n_targets.sum())
        self.batch_size = config.batch_size
        self.loss_name = config.loss
        if config.loss != "softmax":
            self.n_negatives = config.n_negatives
            self.sampler = NegativeSampler(train, distribution=config.sampler,
                                           alpha=config.sampler_alpha,
                                           only_seen_items=config.sample_only_seen_items)
            self.loss_fn = CandidateLoss(config, self.sampler)

    def batches(self, generator: torch.Generator) -> Iterator[PurchaseBatch]:
        order = self.rows[torch.randperm(len(self.rows), generator=generator).numpy()]
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            q = Query.from_csr(self.owner[rows], rows, self.indptr, self.tokens)
            bought = Query.from_csr(rows, rows, self.indptr, self.bought.astype(np.int64)).history.bool()
            items = Query.from_csr(rows, rows, self.indptr, self.items).history
            buys = bought[:, 1:] & q.mask[:, 1:]                     # event t + 1 is a purchase
            targets = items[:, 1:][buys]
            negatives = None
            if self.loss_name != "softmax":
                owners = q.users.repeat_interleave(buys.sum(1))
                negatives = self.sampler.sample(owners, self.n_negatives, generator)
            yield PurchaseBatch(q.history, q.mask, buys, targets, q.users, negatives)

    def loss(self, model: Model, batch: PurchaseBatch) -> torch.Tensor:
        if self.loss_name == "softmax":
            positions = torch.nn.functional.pad(batch.buys, (0, 1))          # after event t: buys[:, t]
            scores = model.prefix_outputs(batch.history, batch.mask, positions)
            if model.outputs_log_probabilities:                                # a mixture: its NLL
                return negative_log_likelihood(scores, batch.targets)
            return softmax_cross_entropy(scores, batch.targets)
        states = model.prefix_states(batch.history, batch.mask)[:, :-1][batch.buys]
        candidates = torch.cat([batch.targets[:, None], batch.negatives], dim=1)
        scores = model.candidate_scores(states, candidates)
        return self.loss_fn(scores, candidates)


class CandidateLoss:
    """The configured loss on scores [P, 1 + N] of candidates [P, 1 + N] (the positive first,
    then N sampled negatives).

    Sampled softmax subtracts each candidate's log-probability under the sampler (the log-q
    correction, Bengio & Senécal 2008): with popularity sampling the plain estimate is biased
    towards pushing popular items down; with uniform sampling the correction is one constant
    that cancels. (The sampler's rejection of a user's own positives is not corrected for: it
    changes q by the share of the catalogue one user holds.)"""

    def __init__(self, config: TrainConfig, sampler: NegativeSampler):
        self.pairwise = pairwise_loss(config.loss, margin=config.margin, bpr_max_reg=config.bpr_max_reg)
        self.log_q = (sampler.probabilities.clamp_min(1e-30).log().float()
                      if config.loss == "sampled_softmax" else None)

    def __call__(self, scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if self.log_q is None:
            return self.pairwise(scores[:, 0], scores[:, 1:])
        if self.log_q.device != scores.device:
            self.log_q = self.log_q.to(scores.device)
        log_q = self.log_q[candidates]
        return self.pairwise(scores[:, 0], scores[:, 1:], log_q[:, 0], log_q[:, 1:])


def _check_full_softmax(model: Model) -> None:
    """A clear error unless the model, as configured, scores all items per prefix."""
    name = type(model).__name__
    if isinstance(model, NextItemUserSoftmax) and model.softmax_unavailable is not None:
        raise ConfigError(f"train.loss = \"softmax\": {name} {model.softmax_unavailable}; or use "
                          f"train.loss = one of {', '.join(PAIRWISE_LOSSES)}")
    if not isinstance(model, (NextItemSoftmax, NextItemUserSoftmax)):
        raise ConfigError(f"{name} scores candidates through its memory and cannot train "
                          f"with a full softmax; use train.loss = one of {', '.join(PAIRWISE_LOSSES)}")


def make_task(model: Model, train: Interactions, config: TrainConfig) -> Task:
    """The task a model trains with, from the capabilities it declares, and a check that the
    configured loss fits it:

    * :class:`StreamLearner` — the time-ordered stream (NMRN);
    * :class:`PurchasePredictor` with ``target == "purchase"`` — next purchase (purchase DMN);
    * :class:`NextItemSoftmax` (or :class:`NextItemUserSoftmax`) / :class:`NextItemPairwise`
      history scorers — every prefix predicts its next item (full softmax / a pairwise loss,
      whichever the model declares and, for the user-reading softmax, its configuration allows);
    * any other model — (user, item) pairs against sampled negatives.
    """
    name = type(model).__name__
    if isinstance(model, StreamLearner):
        return StreamTask(train, config)
    if config.sampler == "adversarial":
        raise ConfigError(f"train.sampler = \"adversarial\" needs a stream model (nmrn); "
                          f"{name} samples uniform or popularity negatives")
    if isinstance(model, NextItemSoftmax) and model.outputs_log_probabilities and config.loss != "softmax":
        raise ConfigError(f"{name}'s scores are log-probabilities over the whole catalogue (its "
                          f"copy read, model.repeat): train it with train.loss = \"softmax\", "
                          f"not {config.loss!r}")
    if isinstance(model, PurchasePredictor) and model.target == "purchase":
        return PurchaseTask(train, config, model.n_items, model.event_types, model.purchase_type)
    if isinstance(model, HistoryScorer) and isinstance(model, (NextItemSoftmax, NextItemUserSoftmax,
                                                               NextItemPairwise)):
        if config.loss == "softmax":
            _check_full_softmax(model)
        if config.loss != "softmax" and not isinstance(model, NextItemPairwise):
            raise ConfigError(f"{name} trains on next items with train.loss = \"softmax\", "
                              f"not {config.loss!r}")
        return NextItemTask(train, config, with_times=model.reads_times)
    if config.loss not in PAIRWISE_LOSSES:
        raise ConfigError(f"train.loss = {config.loss!r} needs a next-item model; "
                          f"{type(model).__name__} trains on pairs ({', '.join(PAIRWISE_LOSSES)})")
    return PairwiseTask(train, config)
