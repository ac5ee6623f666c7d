"""The estimator façade: ``fit`` / ``recommend`` / ``save`` / ``load``, scikit-learn style.

>>> from memrec.recommender import Recommender
>>> from memrec.data.synthetic import generate
>>> rec = Recommender("bprmf", dim=32, train={"epochs": 5}).fit(generate())   # doctest: +SKIP
>>> ids, scores = rec.recommend(["3", "7"], k=10)                              # doctest: +SKIP
>>> rec.observe("3", "42")           # a live event: user 3's memory is written  # doctest: +SKIP
>>> ids, scores = rec.recommend(history=["42", "17"], k=10)  # an anonymous visitor # doctest: +SKIP

Fitted attributes end in ``_``. Ids in and out are the dataset's raw ids. ``observe`` and
``recommend(history=...)`` run on the code path ``memrec serve`` runs
(:class:`memrec.serving.live.LiveModel`, here over an in-memory store).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .checkpoint import SavedModel, load_model, save_model
from .data.interactions import Interactions
from .data.splits import Split
from .evaluation import known_interactions
from .errors import ConfigError
from .models import base, build, effective_params
from .models.capabilities import (AnonymousScorer, Explainer, HistoryScorer, MemoryEntry, MODE_KINDS,
                                  make_query)
from .serving.live import LiveModel
from .serving.store import Event, MemoryStore
from .training.config import RunConfig, TrainConfig, load_config, toml_literal
from .training.callbacks import run_folder_callbacks
from .training.pretrain import PRETRAINERS
from .training.trainer import Trainer, TrainResult, echo_stderr, seed_everything


class Recommender:
    """Train a registered model and serve top-k recommendations.

    Parameters
    ----------
    model : registry name (``memrec models`` lists them)
    train : TrainConfig fields overriding the model's defaults
    **params : the model's hyper-parameters
    """

    #: the live engine and whether events were observed (set by :meth:`observe`)
    _live: LiveModel | None = None
    _observed: bool = False

    def __init__(self, model: str, *, train: dict | None = None, **params):
        overrides = [f"model.{k}={toml_literal(v)}" for k, v in params.items()]
        overrides += [f"train.{k}={toml_literal(v)}" for k, v in (train or {}).items()]
        self.config: RunConfig = load_config(model, overrides=overrides)

    @classmethod
    def from_config(cls, config: RunConfig) -> "Recommender":
        """An unfitted recommender for an already validated run configuration."""
        rec = cls.__new__(cls)
        rec.config = config
        return rec

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, train: Interactions, valid: Interactions | None = None, *,
            run_dir: str | Path | None = None, progress: bool | None = False) -> "Recommender":
        split = Split(kind="given", train=train, valid=valid, test=train.take(np.arange(0)))
        return self.fit_split(split, run_dir=run_dir, progress=progress)

    def fit_split(self, split: Split, *, run_dir=None, resume: bool = False,
                  progress: bool | None = None, echo=None, callbacks=()) -> "Recommender":
        """Train on ``split.train``, choosing the epoch on its validation part. With
        ``train.refit``, then train a fresh model on train + valid for the chosen number of
        epochs (no validation left to stop on) and keep that one.

        With a ``run_dir``, every stage (pretraining, training, refit) logs its epochs to its
        ``log.jsonl`` and redraws ``curves.png`` (and TensorBoard events with
        ``train.tensorboard``); the checkpoint is the training stage's. ``callbacks`` are told
        of every stage's epochs too (the tuner's pruner)."""
        cfg = self.config.train
        if cfg.tensorboard and run_dir is None:
            raise ConfigError("train.tensorboard writes into the run folder: give a run_dir")
        writes = run_dir is not None and distributed.current().is_main    # rank 0 alone writes
        callbacks = [*(run_folder_callbacks(run_dir, cfg) if writes else []), *callbacks]
        session = {"progress": progress, "echo": echo, "callbacks": callbacks}
        model, self.result_ = self._train(split, cfg, run_dir=run_dir, resume=resume, **session)
        known = known_interactions(split, "test")
        if cfg.refit and known is not split.train:
            epochs = max(self.result_.best_epoch, 1)
            (echo or echo_stderr)(f"refit: a fresh model on train + valid for {epochs} epoch(s)")
            merged = replace(split, train=known, valid=None, valid_negatives=None, valid_cases=None)
            refit_cfg = replace(cfg, epochs=epochs, patience=0, max_seconds=0.0)   # epochs already chosen
            model, refit = self._train(merged, refit_cfg, stage="refit", **session)
            self.result_ = replace(self.result_, train_seconds=self.result_.train_seconds + refit.train_seconds,
                                   refit_epochs=epochs)
        indptr, items = known.sequences()
        params = effective_params(self.config.model, self.config.model_params)
        self.saved_ = SavedModel(self.config.model, params, model,
                                 split.train.users, split.train.items, indptr, items, known.sequence_times())
        return self

    def _train(self, split: Split, cfg: TrainConfig, *, run_dir=None, resume: bool = False,
               stage: str = "train", progress, echo, callbacks) -> tuple[base.Model, TrainResult]:
        """A fresh model (pretrained first when the recipe says so) fitted as ``stage``; the
        pretraining, training and refit stages share ``progress``, ``echo`` and ``callbacks``."""
        seed_everything(cfg.seed)
        model = build(self.config.model, split.train.n_users, split.train.n_items,
                      self.config.model_params)
        if cfg.pretrain_epochs > 0 and not resume:
            pretrain = PRETRAINERS.get(self.config.model)
            if pretrain is None:
                raise ConfigError(f"train.pretrain_epochs: model {self.config.model!r} has no "
                                  f"pretraining recipe (models with one: {', '.join(PRETRAINERS)})")
            pretrain(model, split, cfg, echo, progress=progress, callbacks=callbacks,
                     stage="refit_pretrain" if stage == "refit" else "pretrain")
        trainer = Trainer(cfg, run_dir=run_dir, progress=progress, echo=echo, stage=stage,
                          callbacks=callbacks)
        return model, trainer.fit(model, split, resume=resume)

    # -- serving ------------------------------------------------------------------------------
    @property
    def model_(self) -> base.Model:
        return self.saved_.model

    def query(self, users: np.ndarray) -> base.Query:
        """Queries for user indices, with their known histories when the model reads them."""
        return make_query(self.model_, users, self.saved_.seen_indptr, self.saved_.seen_items,
                          times=self.saved_.seen_times)

    @property
    def live_(self) -> LiveModel:
        """The model serving live events (created by the first :meth:`observe`)."""
        if self._live is None or self._live.saved is not self.saved_:
            self._live = LiveModel(self.saved_, MemoryStore(), checkpoint="in-memory")
        return self._live

    def observe(self, user_id, item_id, timestamp: int | None = None, type: str = "click") -> "Recommender":
        """A live event: the item is written into the user's memory (and excluded from its
        recommendations); a user the model never saw starts from the cold-start rule."""
        self.live_.observe([Event(str(user_id), str(item_id), timestamp, type)])
        self._observed = True
        return self

    @torch.no_grad()
    def recommend(self, user_ids=None, k: int = 10, *, exclude_seen: bool = True, history=None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k raw item ids and scores for each raw user id: arrays [U, k]. With ``history``
        (raw item ids, oldest first) instead of users: one anonymous request, [1, k], nothing
        stored. After :meth:`observe`, users are read from their live memories (each user's list
        may be shorter than k when fewer unseen items remain)."""
        if history is not None:
            rec = self.live_.recommend_history([str(i) for i in history], min(k, len(self.saved_.items)),
                                               exclude_seen=exclude_seen)
            return np.array([rec.items], dtype=object), np.array([rec.scores])
        if self._observed:
            recs = [self.live_.recommend(str(u), min(k, len(self.saved_.items)), exclude_seen=exclude_seen)
                    for u in user_ids]
            return (np.array([r.items for r in recs], dtype=object),
                    np.array([r.scores for r in recs], dtype=object))
        users = self.saved_.users.to_index(user_ids, what="user")
        self.model_.eval()
        top = self._top_k(users, k, exclude_seen)
        return self.saved_.items.to_raw(top.indices.numpy()), top.values.numpy()

    @torch.no_grad()
    def recommend_all(self, k: int = 10, *, exclude_seen: bool = True, batch_size: int = 1024
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k for every user the model knows, scored ``batch_size`` users at a time: raw user
        ids [U] and raw item ids and scores [U, k]. Known items score −inf when excluded (a user
        with fewer than k unseen items has −inf at the end of the row). Reads the histories the
        model was fitted or saved with; events given to :meth:`observe` are not among them."""
        self.model_.eval()
        n_users = len(self.saved_.users)
        tops = [self._top_k(np.arange(start, min(start + batch_size, n_users)), k, exclude_seen)
                for start in range(0, n_users, batch_size)]
        items = torch.cat([t.indices for t in tops]).numpy()
        scores = torch.cat([t.values for t in tops]).numpy()
        return self.saved_.users.raw, self.saved_.items.to_raw(items), scores

    def _top_k(self, users: np.ndarray, k: int, exclude_seen: bool):
        """``topk`` of the scores of user indices over every item, their known items at −inf
        when ``exclude_seen``; values and indices [B, min(k, n_items)], on the CPU."""
        s = self.saved_
        scores = self.model_.score_all(self.query(users)).float().cpu().clone()
        if exclude_seen:       # bookkeeping on the CPU, where the scores now are
            seen = base.Query.from_csr(users, users, s.seen_indptr, s.seen_items, device=scores.device)
            rows = torch.arange(len(users), device=scores.device)[:, None].expand_as(seen.history)
            scores[rows[seen.mask], seen.history[seen.mask]] = float("-inf")
        return scores.topk(min(k, len(s.items)), dim=1)

    @torch.no_grad()
    def explain(self, user_id, item_ids, top: int = 5) -> list[list[MemoryEntry]]:
        """What the model attended to when scoring each item for the user: per item, the top
        memory entries, strongest first, with raw user / item ids (relations and slots by
        name or number) and attention weights."""
        s = self.saved_
        user = int(s.users.to_index([user_id], what="user")[0])
        items = torch.as_tensor(s.items.to_index(item_ids, what="item"), device=self.model_.device)
        return self._explain(self.query(np.array([user])), items, top)

    def _explain(self, query: base.Query, items: torch.Tensor, top: int | None) -> list[list[MemoryEntry]]:
        model = self.model_
        if not isinstance(model, Explainer):
            raise ConfigError(f"model {self.saved_.name!r} has no attention to explain")
        model.eval()
        return [[self._labelled(e) for e in entries[:top]] for entries in model.explain(query, items)]

    def _labelled(self, entry: MemoryEntry) -> MemoryEntry:
        """The entry with the raw id (users, items) or the label (relations, slots) as its id."""
        return self.live_.label(entry)

    @torch.no_grad()
    def recommend_session(self, item_ids, k: int = 10, *, exclude_seen: bool = False
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k raw item ids and scores [k] for a live, anonymous session: its clicks' raw item
        ids, oldest first. Session models only (:class:`AnonymousScorer` history scorers); clicks already in the
        session stay recommendable unless ``exclude_seen`` (re-clicks are common in sessions)."""
        query = self._session_query(item_ids)
        scores = self.model_.score_all(query).float()[0].cpu().clone()
        if exclude_seen:
            scores[query.history[query.mask].cpu()] = float("-inf")
        top = scores.topk(min(k, len(self.saved_.items)))
        return self.saved_.items.to_raw(top.indices.numpy()), top.values.numpy()

    @torch.no_grad()
    def explain_session(self, item_ids) -> list[MemoryEntry]:
        """The attention the session's clicks got (those the model's window keeps), strongest
        first, with raw item ids."""
        query = self._session_query(item_ids)
        return [e for e in self._explain(query, query.history[0, :1], None)[0] if e.kind not in MODE_KINDS]

    @torch.no_grad()
    def session_modes(self, item_ids, recommended) -> list[MemoryEntry | None]:
        """For a live session (its clicks' raw ids) and raw item ids recommended to it: how a
        copy-read model recommended each one, a "repeat" (of the slot named) or an "explore"
        entry (:data:`~memrec.models.capabilities.MODE_KINDS`); None for models without one."""
        query = self._session_query(item_ids)
        items = torch.as_tensor(self.saved_.items.to_index(recommended, what="item"),
                                device=self.model_.device)
        rows = self._explain(query, items, 1) if isinstance(self.model_, Explainer) else [[] for _ in items]
        return [row[0] if row and row[0].kind in MODE_KINDS else None for row in rows]

    def _session_query(self, item_ids) -> base.Query:
        if not (isinstance(self.model_, AnonymousScorer) and isinstance(self.model_, HistoryScorer)):
            raise ConfigError(f"model {self.saved_.name!r} recommends for known users, not for "
                              "sessions; use --user")
        items = self.saved_.items.to_index(item_ids, what="item")
        if len(items) == 0:
            raise ConfigError("a session needs at least one click")
        self.model_.eval()
        return make_query(self.model_, [-1], np.array([0, len(items)]), items, rows=[0])

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        s = self.saved_
        save_model(folder, name=s.name, params=s.params, model=s.model, users=s.users,
                   items=s.items, seen_indptr=s.seen_indptr, seen_items=s.seen_items, seen_times=s.seen_times)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "Recommender":
        """A saved model on ``device`` (a ``torch.device``, or auto, cpu, cuda, cuda:N, mps);
        recommendations come back as NumPy arrays from any device."""
        saved = load_model(folder, device)
        rec = cls.from_config(RunConfig(model=saved.name, model_params=saved.params, train=TrainConfig()))
        rec.saved_ = saved
        return rec


__all__ = ["Recommender"]
