"""The stream training task: events in time order, micro-batch by micro-batch (NMRN).

Models that declare :class:`~memrec.models.capabilities.StreamLearner` (NMRN) keep a memory that every observed event writes, so training
cannot shuffle: an epoch replays the training stream from its start (the memory reset to empty),
and each micro-batch's loss comes from :meth:`stream_step` (score candidates from the memory
before the micro-batch, then write the micro-batch). With ``train.stream_mode = "exact"`` every
micro-batch is one event and the model's event-by-event reference path is used.

Negatives: ``train.sampler`` uniform or popularity (as the other tasks), or ``adversarial``:
the generator of :mod:`memrec.adversarial` picks ``n_negatives`` from a uniform pool of
``gan_pool`` non-positives, and is updated by REINFORCE after every recommender step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..adversarial import AdversarialSampler, gumbel_noise
from ..data.interactions import Interactions
from ..data.sorting import stable_argsort
from ..losses import PAIRWISE_LOSSES, pairwise_loss
from ..errors import ConfigError
from ..models.base import Model
from ..sampling import NegativeSampler
from .config import TrainConfig


def stream_order(data: Interactions) -> np.ndarray:
    """Row positions in global time order, stable (ties keep file order).

    With timestamps: by timestamp. Without (files that give only each user's order, such as
    amazon-games): by each event's relative position in its user's sequence, (rank + 1) / length,
    so every user's history is spread over the whole stream in order, rather than users arriving
    one after the other. That interleaving is our choice (a reconstruction), not a real clock.
    """
    if data.timestamp is not None:
        return stable_argsort(data.timestamp)
    order = stable_argsort(data.user)                                   # per user, file order
    counts = np.bincount(data.user, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_users = data.user[order]
    rank = np.arange(len(order)) - starts[sorted_users]
    pseudo_time = np.empty(len(order))
    pseudo_time[order] = (rank + 1) / counts[sorted_users]
    return stable_argsort(pseudo_time)


@dataclass(frozen=True)
class StreamBatch:
    """Consecutive events: users, items long [b]; draws long [b, N] (negatives) or [b, P]
    (the adversarial pool, with Gumbel noise [b, N, P]); first: the epoch's first batch."""

    users: torch.Tensor
    items: torch.Tensor
    draws: torch.Tensor
    first: bool
    noise: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.users)


class StreamTask:
    """Replay ``train`` in time order (``stream_order``) in micro-batches of ``batch_size``.

    Parameters
    ----------
    train : the events to learn from
    config : TrainConfig (batch_size, loss, margin, n_negatives, sampler, stream_mode, gan_*)
    known : every interaction known so far (negatives are never one of them); default ``train``
    adversary : an existing generator to keep training (online updates reuse the offline one)
    reset_memory : start every epoch from the empty memory (offline replay); False continues the
        model's memory (online updates on new data)
    """

    def __init__(self, train: Interactions, config: TrainConfig, *, known: Interactions | None = None,
                 adversary: AdversarialSampler | None = None, reset_memory: bool = True):
        if config.loss not in PAIRWISE_LOSSES:
            raise ConfigError(f"stream training needs a pairwise loss (hinge, the paper's), not {config.loss!r}")
        if config.sampler == "adversarial" and min(config.gan_pool, config.gan_dim) < 1:
            raise ConfigError("train.gan_pool and train.gan_dim must be at least 1")
        order = stream_order(train)
        self.users = torch.as_tensor(train.user[order], dtype=torch.long)
        self.items = torch.as_tensor(train.item[order], dtype=torch.long)
        self.n_examples = len(train)
        self.config = config
        self.exact = config.stream_mode == "exact"
        self.batch_size = 1 if self.exact else config.batch_size
        self.reset_memory = reset_memory
        distribution = "uniform" if config.sampler == "adversarial" else config.sampler
        self.sampler = NegativeSampler(known if known is not None else train, distribution=distribution,
                                       alpha=config.sampler_alpha,
                                       only_seen_items=config.sample_only_seen_items)
        self.adversary = adversary
        if self.adversary is None and config.sampler == "adversarial":
            self.adversary = AdversarialSampler(train.n_users, train.n_items, dim=config.gan_dim,
                                                lr=config.gan_lr, temperature=config.gan_temperature,
                                                seed=config.seed)
        self.epoch = 0
        self.loss_fn = pairwise_loss(config.loss, margin=config.margin, bpr_max_reg=config.bpr_max_reg)

    # -- state across a checkpoint (the trainer saves it after every epoch) -------------------
    def state_dict(self) -> dict:
        """What a resumed run needs to continue this task exactly: the epoch counter (it decides
        the GAN warm-up) and the generator G (weights, optimizer, pretrained flag); tensors only.

        The model's memory is a buffer in the model's own state_dict, and the truncated-gradient
        link to the last micro-batch (``NMRN._pending``) never crosses an epoch boundary: every
        epoch's first batch resets the memory (or, online, forgets the link) before its loss.
        """
        state = {"epoch": torch.tensor(self.epoch)}
        if self.adversary is not None:
            state["adversary"] = self.adversary.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if "epoch" not in state:
            raise ValueError("the checkpoint holds no stream-task state (epoch counter, "
                             "adversarial generator); it was written by an older memrec")
        if ("adversary" in state) != (self.adversary is not None):
            raise ValueError("train.sampler differs from the checkpoint's (adversarial or not)")
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])
        self.epoch = int(state["epoch"])

    def _adversarial(self) -> bool:
        """Generator negatives from the epoch after the warm-up (online updates: at once)."""
        if self.adversary is None:
            return False
        return self.adversary.pretrained or self.epoch > self.config.gan_warmup_epochs

    def batches(self, generator: torch.Generator) -> Iterator[StreamBatch]:
        self.epoch += 1
        adversarial = self._adversarial()
        if adversarial and not self.adversary.pretrained:
            self.adversary.pretrain(self.users, self.items, self.sampler, generator,
                                    epochs=self.config.gan_pretrain_epochs,
                                    batch_size=max(self.config.batch_size, 256))
        width = self.config.gan_pool if adversarial else self.config.n_negatives
        for start in range(0, self.n_examples, self.batch_size):
            users = self.users[start:start + self.batch_size]
            draws = self.sampler.sample(users, width, generator)
            noise = (gumbel_noise((len(users), self.config.n_negatives, width), generator)
                     if adversarial else None)
            yield StreamBatch(users, self.items[start:start + self.batch_size], draws, start == 0, noise)

    def loss(self, model: Model, batch: StreamBatch) -> torch.Tensor:
        if batch.first:
            model.reset_memory() if self.reset_memory else model.forget_pending()
        negatives, picked = batch.draws, None
        if batch.noise is not None:
            # the generator G stays on the CPU with its own optimizer, whatever train.device is:
            # its inputs go there, its picks come back to the model's device
            negatives, picked = self.adversary.choose(batch.users.cpu(), batch.draws.cpu(), batch.noise.cpu())
            negatives = negatives.to(batch.draws.device)
        candidates = torch.cat([batch.items[:, None], negatives], dim=1)
        step = model.stream_step_exact if self.exact else model.stream_step
        scores = step(batch.users, batch.items, candidates)
        if picked is not None:
            with torch.no_grad():                           # reward: the hinge each negative costs
                reward = torch.relu(self.config.margin - scores[:, :1] + scores[:, 1:])
            self.adversary.reinforce(batch.users.cpu(), batch.draws.cpu(), picked, reward.cpu())
        return self.loss_fn(scores[:, 0], scores[:, 1:])


__all__ = ["StreamTask", "StreamBatch", "stream_order"]
