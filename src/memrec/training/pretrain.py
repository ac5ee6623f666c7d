"""Two-stage recipes: pretrain a simpler model, load its weights into the real one.

CMN's authors pretrain a pairwise GMF and load its user and item embeddings, scaled by 0.5,
into CMN's user memory M and item memory E (C stays random). Registered by model name in
:data:`PRETRAINERS`; the façade runs one when ``train.pretrain_epochs > 0`` (not on resume:
the checkpoint already holds the trained weights). The stand-in model trains with the shared
trainer as the ``pretrain`` stage (``refit_pretrain`` for a refit's fresh model): its epochs
read "pretraining GMF 3/20" and are logged with that stage in the run's ``log.jsonl`` (the
``callbacks`` the façade passes).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..data.splits import Split
from ..models.base import Model
from ..models.gmf import GMF
from ..progress import echo_stderr
from .callbacks import Callback
from .config import TrainConfig
from .trainer import Trainer


def pretrain_cmn_with_gmf(model: Model, split: Split, cfg: TrainConfig, echo=None, *,
                          progress: bool | None = False, callbacks: list[Callback] = (),
                          stage: str = "pretrain") -> None:
    """GMF with BPR (Adam, lr 1e-3, L2 ``pretrain_weight_decay`` on w only, the same batch size
    and negatives as CMN) for ``pretrain_epochs``; then M ← 0.5·P, E ← 0.5·Q (authors' code)."""
    (echo or echo_stderr)(f"pretraining: GMF (BPR) for {cfg.pretrain_epochs} epochs; CMN's user "
                          "and item memories start from half its embeddings")
    gmf = GMF(model.n_users, model.n_items, dim=model.item_memory.embedding_dim)
    gmf_cfg = replace(cfg, epochs=cfg.pretrain_epochs, optimizer="adam", lr=1e-3, eps=1e-8,
                      batch_size=cfg.pretrain_batch_size or cfg.batch_size,
                      weight_decay=cfg.pretrain_weight_decay, loss="bpr", patience=0,
                      clip_grad_norm=0.0, pretrain_epochs=0, max_seconds=0.0)
    _fit_stand_in(gmf, split, gmf_cfg, echo, progress, callbacks, stage)
    with torch.no_grad():
        model.user_memory.weight.copy_(0.5 * gmf.user_embedding.weight)
        model.item_memory.weight.copy_(0.5 * gmf.item_embedding.weight)


PRETRAINERS = {"cmn": pretrain_cmn_with_gmf}


def pretrain_ksr(model: Model, split: Split, cfg: TrainConfig, echo=None, *,
                 progress: bool | None = False, callbacks: list[Callback] = (),
                 stage: str = "pretrain") -> None:
    """KSR's inputs (authors' pipeline): BPR-MF item vectors (qmf in the official code) trained
    for ``pretrain_epochs`` with Adam 1e-3 and one uniform negative, copied into q_i; and, when
    ``model.transe`` names a TransE run, its entity vectors for the linked items (zero rows and
    no memory writes for unlinked ones) and the vectors of its item relations as memory keys."""
    from ..errors import DataError
    from ..knowledge_runs import load_transe
    from ..errors import ConfigError
    from ..models.baselines.bprmf import BPRMF
    say = echo or echo_stderr
    model.check_knowledge_source()          # no silent KSR without knowledge (model.kg = "none" is the ablation)
    if model.transe:
        vectors = load_transe(model.transe)
        entity_of_item = torch.as_tensor(vectors.graph.item_entities(split.train.items))
        linked = entity_of_item >= 0
        if not bool(linked.any()):
            raise DataError(f"{model.transe}: no item of the training data is linked in that "
                            "TransE run's graph (was it trained on this dataset's KG?)")
        if vectors.entity.shape[1] != model.entity.shape[1]:
            raise ConfigError(f"model.kg_dim = {model.entity.shape[1]} but the TransE run has "
                              f"{vectors.entity.shape[1]}-d vectors")
        if len(vectors.item_relations) == 0:
            raise DataError(f"{model.transe}: " + (vectors.item_relations.why_none
                                                   or "the graph has no item relations for KSR's memory"))
        entity = vectors.entity[entity_of_item.clamp_min(0)] * linked[:, None]
        model.load_knowledge(entity, linked, vectors.slot_keys(), vectors.slot_names())
        say(f"KSR knowledge: {int(linked.sum())}/{len(linked)} items linked, "
            f"{len(vectors.item_relations)} relation slots from {model.transe}: "
            f"{', '.join(vectors.slot_names())}")
    say(f"pretraining: BPR-MF for {cfg.pretrain_epochs} epochs; KSR's item vectors start from its own")
    bpr = BPRMF(model.n_users, model.n_items, dim=model.item_embedding.embedding_dim)
    bpr_cfg = replace(cfg, epochs=cfg.pretrain_epochs, optimizer="adam", lr=1e-3, eps=1e-8,
                      batch_size=cfg.pretrain_batch_size or cfg.batch_size, weight_decay=0.0,
                      loss="bpr", n_negatives=1, sampler="uniform", patience=0,
                      clip_grad_norm=0.0, pretrain_epochs=0, max_seconds=0.0)
    _fit_stand_in(bpr, split, bpr_cfg, echo, progress, callbacks, stage)
    with torch.no_grad():
        model.item_embedding.weight.copy_(bpr.item_embedding.weight)


PRETRAINERS["ksr"] = pretrain_ksr


def _fit_stand_in(stand_in: Model, split: Split, cfg: TrainConfig, echo, progress,
                  callbacks: list[Callback], stage: str) -> None:
    """Train the model whose weights the real one starts from, as ``stage`` ("pretrain", or
    "refit_pretrain" before a refit), on the training part only: there is nothing to choose an
    epoch by."""
    no_validation = replace(split, valid=None, valid_cases=None, valid_negatives=None)
    Trainer(cfg, progress=progress, echo=echo, stage=stage, callbacks=callbacks).fit(
        stand_in, no_validation)
