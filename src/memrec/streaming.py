"""The streaming evaluation protocol: recommend, then learn, slice after slice of a time-ordered log.

Spec ``rum-ksr-stamp-nmrn.md`` §4.4 (the protocol of NMRN and of the same group's SIGIR'18
streaming paper, as recalled there; details UNCONFIRMED, our choices are marked):

1. Sort all interactions by time (:func:`~memrec.training.stream.stream_order`: timestamps, or
   for order-only files each user's events spread over the stream by relative position).
2. The first ``train_frac`` of the stream is the offline part: a model is trained on it with the
   one trainer, its epoch chosen on the offline part's last ``valid_frac`` (time order), which is
   then fed to the model like a test slice (without being scored).
3. The rest is cut into ``n_slices`` consecutive slices of (almost) equal size. For each slice:
   **recommend** for every event's user, ranking all items (the user's items known before the
   slice are not ranked, except the event's own item: a repeat is still a hit), and score the
   true item (HR@K, NDCG@K per event, exact under ties); **then update** the model with the slice.
4. Report per-slice and mean (over slices) metrics, and seconds per update (events/s).

How a model is updated with a slice (``update``):

* ``frozen`` — no learning. What the model reads at inference still grows: histories of sequence
  models (RUM, GRU4Rec, FPMC) include every fed event, and a model with a memory written by
  events (NMRN) writes the slice into it (``model.observe``).
* ``retrain`` — a fresh model trained on everything fed so far, for the offline run's chosen
  number of epochs (no validation left to stop on).
* ``online`` — models with an online update (:class:`~memrec.models.capabilities.StreamLearner`: NMRN): ``online_epochs`` passes
  of stream training over the slice in time order, the memory carried on, the offline run's
  negative sampler (the GAN generator) kept and still trained.

The gap between ``frozen`` and ``online`` is what the online update buys; ``retrain`` is the
expensive upper reference for models without one.

The model trains, scores and learns online on ``train.device`` (``memrec stream --device``); the
protocol's bookkeeping (known items, ranks, metrics) stays on the CPU, where the scores come back.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .data.interactions import Interactions
from .data.splits import Split
from .evaluation import MetricAccumulator, concat_parts, mask_known_items
from .metrics import metric_values, rank_counts
from .errors import ConfigError
from .models import build, spec
from .models.base import Model
from .models.capabilities import StreamLearner, make_query
from .training.config import RunConfig
from .training.stream import StreamTask, stream_order
from .training.tasks import make_task
from .training.trainer import Trainer, seed_everything

UPDATES = ("frozen", "retrain", "online")


@dataclass(frozen=True)
class StreamConfig:
    """Settings of the streaming protocol (``memrec stream`` options)."""

    train_frac: float = 0.5        # offline part of the stream (the spec's "e.g. 50%")
    valid_frac: float = 0.1        # of the offline part, its last events: early stopping
    n_slices: int = 5              # consecutive test slices ("a few equal slices")
    update: str = "online"         # frozen | retrain | online
    online_epochs: int = 1         # passes over each slice for online updates
    ks: tuple[int, ...] = (10, 20)
    batch_size: int = 1024         # events per scoring call

    def __post_init__(self):
        if not 0 < self.train_frac < 1:
            raise ConfigError(f"train_frac must be in (0, 1), got {self.train_frac}")
        if not 0 <= self.valid_frac < 1:
            raise ConfigError(f"valid_frac must be in [0, 1), got {self.valid_frac}")
        if self.n_slices < 1:
            raise ConfigError(f"n_slices must be at least 1, got {self.n_slices}")
        if self.update not in UPDATES:
            raise ConfigError(f"update = {self.update!r}; choose from {', '.join(UPDATES)}")
        if self.online_epochs < 1 or self.batch_size < 1 or not self.ks or min(self.ks) < 1:
            raise ConfigError("online_epochs, batch_size and every K must be positive")


@dataclass(frozen=True, eq=False)
class StreamParts:
    """The stream cut as the protocol uses it; every part in time order."""

    train: Interactions
    valid: Interactions
    slices: list[Interactions]


def stream_parts(data: Interactions, cfg: StreamConfig) -> StreamParts:
    """Offline train / offline valid / consecutive test slices of the time-ordered stream."""
    data.require_nonempty("the stream")
    order = stream_order(data)
    n_offline = int(round(cfg.train_frac * len(order)))
    n_valid = int(round(cfg.valid_frac * n_offline))
    if n_offline - n_valid < 1 or len(order) - n_offline < cfg.n_slices:
        raise ConfigError(f"a stream of {len(order)} events is too short for train_frac "
                          f"{cfg.train_frac} and {cfg.n_slices} slices")
    test = np.array_split(order[n_offline:], cfg.n_slices)
    return StreamParts(data.take(order[:n_offline - n_valid]),
                       data.take(order[n_offline - n_valid:n_offline]),
                       [data.take(rows) for rows in test])


# -- recommend: score every event of a slice ----------------------------------------------------
@torch.no_grad()
def evaluate_events(model: Model, events: Interactions, known: Interactions, *,
                    ks=(10, 20), batch_size: int = 1024) -> dict[str, float]:
    """Mean metrics over the events of ``events``: each ranks all items for its user, given what
    is ``known`` (the user's known items are not ranked, except the event's own item). The model
    is asked once per distinct user; histories (for models that read them) are the known ones.

    Also ``warm_HR@K`` / ``warm_NDCG@K``: the same over the events of users with something known
    (on ML-100K most users rate everything in one burst, so most test events are a new user's),
    and ``warm_share``, the fraction of such events."""
    was_training = model.training
    model.eval()
    seen = known.user_items()
    indptr, history = known.sequences()
    times = known.sequence_times()
    users, inverse = np.unique(events.user.astype(np.int64), return_inverse=True)
    by_user = np.argsort(inverse, kind="stable")
    event_user_row = inverse[by_user]
    targets = events.item.astype(np.int64)[by_user]
    warm_user = np.diff(seen.indptr) > 0                     # the user has a known item
    acc, warm = MetricAccumulator(), MetricAccumulator()
    try:
        for lo in range(0, len(users), batch_size):
            block = users[lo:lo + batch_size]
            query = make_query(model, block, indptr, history, times=times)
            block_scores = model.score_all(query).float().cpu()     # ranked beside CPU bookkeeping
            first, last = np.searchsorted(event_user_row, [lo, lo + len(block)])
            for start in range(first, last, batch_size):
                rows = np.arange(start, min(start + batch_size, last))
                local = torch.as_tensor(event_user_row[rows] - lo)
                scores = block_scores[local].clone()
                relevant = torch.as_tensor(targets[rows])[:, None]
                mask = torch.ones_like(relevant, dtype=torch.bool)
                event_users = users[event_user_row[rows]]
                n_candidates = mask_known_items(scores, seen, event_users, relevant, mask)
                values = metric_values(rank_counts(scores, relevant, mask, n_candidates=n_candidates), tuple(ks))
                acc.add(values)
                is_warm = torch.as_tensor(warm_user[event_users])
                if is_warm.any():
                    warm.add({name: v[is_warm] for name, v in values.items()})
    finally:
        model.train(was_training)
    out = acc.mean()
    out.update({f"warm_{name}": v for name, v in warm.mean().items() if name[:2] in ("HR", "ND")})
    out["warm_share"] = warm.count / max(acc.count, 1)
    return out


# -- update: feed a slice -----------------------------------------------------------------------
class StreamRunner:
    """Train offline, then recommend-then-update slice by slice (see the module docstring)."""

    def __init__(self, config: RunConfig, stream: StreamConfig, *, echo=None, progress=False):
        self.config, self.stream = config, stream
        self.echo = echo or (lambda line: None)
        self.progress = progress

    def _fit(self, data: Interactions, valid: Interactions | None, train_cfg, *, task=None):
        """A fresh model trained on ``data`` (validation on ``valid`` when given)."""
        seed_everything(train_cfg.seed)
        model = build(self.config.model, data.n_users, data.n_items, self.config.model_params)
        split = Split(kind="stream", train=data, test=data.take(np.arange(0)), valid=valid)
        if task is None and model.trainable:
            task = make_task(model, data, train_cfg)
        trainer = Trainer(train_cfg, progress=self.progress, echo=self.echo)
        return model, trainer.fit(model, split, task=task), task

    def _feed(self, model: Model, events: Interactions, known: Interactions) -> Model:
        """Give the model a new slice (``known`` already includes it); returns the model to use."""
        update = self.stream.update
        if update == "retrain":
            cfg = replace(self.config.train, epochs=self.retrain_epochs, patience=0)
            return self._fit(known, None, cfg)[0]
        if update == "frozen":
            if isinstance(model, StreamLearner):
                order = stream_order(events)
                model.observe(torch.as_tensor(events.user[order], dtype=torch.long, device=model.device),
                              torch.as_tensor(events.item[order], dtype=torch.long, device=model.device))
            return model
        cfg = replace(self.config.train, epochs=self.stream.online_epochs, patience=0)
        task = StreamTask(events, cfg, known=known, adversary=self.task.adversary, reset_memory=False)
        split = Split(kind="stream", train=events, test=events.take(np.arange(0)))
        Trainer(cfg, progress=self.progress, echo=lambda line: None).fit(model, split, task=task)
        return model

    def run(self, data: Interactions) -> dict:
        stream, cfg = self.stream, self.config
        if stream.update == "online" and not issubclass(spec(cfg.model).cls, StreamLearner):
            raise ConfigError(f"model {cfg.model!r} has no online update; use --update frozen or retrain")
        parts = stream_parts(data, stream)
        start = time.perf_counter()
        model, result, self.task = self._fit(parts.train, parts.valid if len(parts.valid) else None,
                                             cfg.train)
        offline_seconds = time.perf_counter() - start
        self.retrain_epochs = max(result.best_epoch, 1)
        known = concat_parts([parts.train, parts.valid])
        if len(parts.valid):
            model = self._feed(model, parts.valid, known)
        slices = []
        for index, events in enumerate(parts.slices, 1):
            t0 = time.perf_counter()
            metrics = evaluate_events(model, events, known, ks=stream.ks, batch_size=stream.batch_size)
            t1 = time.perf_counter()
            known = concat_parts([known, events])
            model = self._feed(model, events, known)
            t2 = time.perf_counter()
            slices.append({"slice": index, "events": len(events), **metrics,
                           "recommend_seconds": t1 - t0, "update_seconds": t2 - t1,
                           "update_events_per_s": len(events) / max(t2 - t1, 1e-9)})
            self.echo(f"slice {index}/{len(parts.slices)}: {len(events):,} events  "
                      + "  ".join(f"{m} {metrics[m]:.4f}" for m in _headline(stream.ks))
                      + f"  update {t2 - t1:.1f}s")
        names = sorted({k for s in slices for k in s} - {"slice", "events"})
        mean = {k: float(np.nanmean([s.get(k, np.nan) for s in slices])) for k in names}
        return {"model": cfg.model, "update": stream.update, "stream": asdict(stream),
                "config": cfg.to_json(), "offline": {"events": len(parts.train), "valid_events": len(parts.valid),
                                                     "seconds": offline_seconds, "best_epoch": result.best_epoch},
                "slices": slices, "mean": mean}


def _headline(ks) -> list[str]:
    return [f"{name}@{k}" for k in ks[:1] for name in ("HR", "NDCG")]


def run_stream(config: RunConfig, data: Interactions, stream: StreamConfig, *, echo=None,
               progress: bool = False) -> dict:
    """The streaming protocol end to end; returns the results (per-slice and mean metrics)."""
    return StreamRunner(config, stream, echo=echo, progress=progress).run(data)


__all__ = ["StreamConfig", "StreamParts", "stream_parts", "evaluate_events", "run_stream", "UPDATES"]
