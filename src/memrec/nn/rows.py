"""Products of many rows with one vector each (DEMN's visitor and neighbour reads), computed the
way that is fast in each mode. In training, as broadcast-and-sum: the backward of the batched
matmul is an [n, L, 1] @ [n, 1, d] outer product that runs as n tiny GEMMs (it was the slowest op
of a DEMN training step). Outside autograd, as the matmul: broadcasting would make an [n, L, d]
temporary, gigabytes when a full-ranking batch encodes 943 users × 737 events."""

from __future__ import annotations

import torch


def row_products(rows: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """rows [..., L, d] · vector [..., d] → [..., L]."""
    if torch.is_grad_enabled():
        return (rows * vector[..., None, :]).sum(-1)
    return (rows @ vector[..., None])[..., 0]


def weighted_rows(weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Σ_l weights[..., l] · rows[..., l, :]: weights [..., L], rows [..., L, d] → [..., d]."""
    if torch.is_grad_enabled():
        return (weights[..., None] * rows).sum(-2)
    return (weights[..., None, :] @ rows)[..., 0, :]


__all__ = ["row_products", "weighted_rows"]
