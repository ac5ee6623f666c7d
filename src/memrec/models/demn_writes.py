"""DEMN's L3 ablation writes (spec B.6): the slot writes its time-gated write is measured against,
on DEMN's own slots (``model.write``). Pure functions of the weights they are given, so
``models/demn.py`` keeps the model's own equations (and stays under 600 lines)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..memory.erase_add import erase_add_unroll
from ..memory.fifo import fifo_states
from ..memory.state import MemoryState


def erase_add_states(keys: torch.Tensor, beta: float, erase_vector: nn.Linear, add_vector: nn.Linear,
                     values: torch.Tensor, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RUM-F's write on DEMN's slots: addressed by the keys [S, d] alone, w = softmax_s(β cos(k_s,
    x)) (so the write is affine in the memory and the shared log-depth scan gives every state),
    erase e = σ(W_e[x; n̄]) and add a = tanh(W_a[x; n̄]). values [B, S, d], x / context [B, T, d],
    mask [B, T] → the memory after every event [B, T, S, d]."""
    address = F.cosine_similarity(keys, x[..., None, :], dim=-1, eps=1e-8)
    weights = torch.softmax(beta * address, -1)                                     # [B, T, S]
    inputs = torch.cat([x, context], -1)
    erase, add = torch.sigmoid(erase_vector(inputs)), torch.tanh(add_vector(inputs))
    state = MemoryState(values, torch.ones(values.shape[:2], dtype=torch.bool, device=x.device))
    return erase_add_unroll(state, weights, erase, add, mask).values


def fifo_slot_states(values: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RUM-I's write: the last S inputs. The current slots are pushed first (a full queue
    reproduces itself), so the memory never has empty slots and starts at K + 1·p_uᵀ.
    values [B, S, d], x [B, T, d], mask [B, T] → [B, T, S, d]."""
    S = values.shape[1]
    queue = torch.cat([values, x], 1)
    filled = torch.cat([mask.new_ones(mask.shape[0], S), mask], 1)
    return fifo_states(queue, filled, S).values[:, S:]


__all__ = ["erase_add_states", "fifo_slot_states"]
