"""Two-stage recipes: pretrain a simpler model, load its weights into the real one.

CMN's authors pretrain a pairwise GMF and load its user and item embeddings, scaled by 0.5,
into CMN's user memory M and item memory E (C stays random). Registered by model name in
:data:`PRETRAINERS`; the façade runs one when ``train.pretrain_epochs > 0`` (not on resume:
the checkpoint already holds the trained weights).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..data.splits import Split
from ..models.base import Model
from ..models.gmf import GMF
from .config import TrainConfig
from .trainer import Trainer


def pretrain_cmn_with_gmf(model: Model, split: Split, cfg: TrainConfig, echo=None) -> None:
    """GMF with BPR (Adam, lr 1e-3, L2 ``pretrain_weight_decay`` on w only, the same batch size
    and negatives as CMN) for ``pretrain_epochs``; then M ← 0.5·P, E ← 0.5·Q (authors' code)."""
    gmf = GMF(model.n_users, model.n_items, dim=model.item_memory.embedding_dim)
    gmf_cfg = replace(cfg, epochs=cfg.pretrain_epochs, optimizer="adam", lr=1e-3, eps=1e-8,
                      batch_size=cfg.pretrain_batch_size or cfg.batch_size,
                      weight_decay=cfg.pretrain_weight_decay, loss="bpr", patience=0,
                      clip_grad_norm=0.0, pretrain_epochs=0)
    no_validation = replace(split, valid=None, valid_cases=None, valid_negatives=None)
    Trainer(gmf_cfg, progress=False, echo=echo).fit(gmf, no_validation)
    with torch.no_grad():
        model.user_memory.weight.copy_(0.5 * gmf.user_embedding.weight)
        model.item_memory.weight.copy_(0.5 * gmf.item_embedding.weight)


PRETRAINERS = {"cmn": pretrain_cmn_with_gmf}
