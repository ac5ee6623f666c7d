"""``MemoryState``: the tensors of an external memory, passed between reads and writes.

Writes return a new state (no in-place mutation), so a memory can be unrolled over a sequence
under autograd and replayed event by event in serving with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class MemoryState:
    """A batch of memories with M slots each.

    Shapes
    ------
    values : [B, M, Dv]
        What a read returns (weighted by attention) and what writes change.
    mask : bool [B, M]
        True where a slot holds something; reads ignore the others.
    keys : [B, M, Dk], optional
        What a query is compared with. ``None`` means the values are their own keys.
    """

    values: torch.Tensor
    mask: torch.Tensor
    keys: torch.Tensor | None = None

    def __post_init__(self):
        if self.values.dim() != 3:
            raise ValueError(f"values must be [B, M, D], got {tuple(self.values.shape)}")
        if self.mask.shape != self.values.shape[:2]:
            raise ValueError(f"mask {tuple(self.mask.shape)} does not match values {tuple(self.values.shape)}")
        if self.keys is not None and self.keys.shape[:2] != self.values.shape[:2]:
            raise ValueError(f"keys {tuple(self.keys.shape)} do not match values {tuple(self.values.shape)}")

    @property
    def addressing_keys(self) -> torch.Tensor:
        """The tensor attention compares queries with: ``keys`` if set, else ``values``."""
        return self.values if self.keys is None else self.keys

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def n_slots(self) -> int:
        return self.values.shape[1]

    def with_values(self, values: torch.Tensor) -> "MemoryState":
        return replace(self, values=values)

    @classmethod
    def empty(cls, batch_size: int, n_slots: int, dim: int, *, key_dim: int | None = None,
              dtype=torch.float32, device=None) -> "MemoryState":
        """All slots empty (mask False), zero values (and keys when ``key_dim`` is given)."""
        values = torch.zeros(batch_size, n_slots, dim, dtype=dtype, device=device)
        mask = torch.zeros(batch_size, n_slots, dtype=torch.bool, device=device)
        keys = None if key_dim is None else torch.zeros(batch_size, n_slots, key_dim, dtype=dtype, device=device)
        return cls(values, mask, keys)
