"""Learned slots: a parametric memory addressed by ids and written only by back-propagation.

The memory of CMN (neighbour users: keys from table M, values from table C), MARS (a user's items:
keys A, values B) and the purchase DMN (session events) is a set of embedding rows picked by ids.
There is no write rule: gradient descent on the loss is the write. :class:`LearnedSlots` gathers
those rows into a :class:`~memrec.memory.state.MemoryState` so that the shared attention reads
apply unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .state import MemoryState

__all__ = ["LearnedSlots"]


class LearnedSlots(nn.Module):
    """An embedding table (optionally a key table and a value table) read as a memory.

    Parameters
    ----------
    n_slots_total : int
        Rows in the table(s): every id that can be addressed (users for CMN, items for MARS).
    dim : int
        Value dimension Dv.
    padding_idx : int, optional
        A row kept at zero that receives no gradient (as in ``nn.Embedding``); also the id
        treated as empty when ``forward`` is called without a mask.
    init_std : float
        Standard deviation of the normal initialisation (CMN's official code: 0.01).
    separate_keys : bool
        False (default): one table, keys = values (``MemoryState.keys`` is None and attention
        compares queries with the values). True: a second table gives the keys (CMN's M and C,
        MARS's A and B).
    key_dim : int, optional
        Dk of the key table when ``separate_keys``; defaults to ``dim``.

    Attributes
    ----------
    value_table : nn.Embedding [n_slots_total, Dv]
    key_table : nn.Embedding [n_slots_total, Dk] or None
        Exposed so a model can index them directly (CMN also uses M[u] as the query user).

    Shapes
    ------
    forward(ids [B, M] long, mask [B, M] bool | None) -> MemoryState with
    values [B, M, Dv], mask [B, M], keys [B, M, Dk] | None.

    Example
    -------
    >>> slots = LearnedSlots(10, 4, separate_keys=True)
    >>> state = slots(torch.tensor([[1, 2, 3]]), torch.tensor([[True, True, False]]))
    >>> state.values.shape, state.keys.shape
    (torch.Size([1, 3, 4]), torch.Size([1, 3, 4]))
    """

    def __init__(self, n_slots_total: int, dim: int, *, padding_idx: int | None = None,
                 init_std: float = 0.01, separate_keys: bool = False, key_dim: int | None = None):
        super().__init__()
        if key_dim is not None and not separate_keys:
            raise ValueError("key_dim needs separate_keys=True (a shared table has keys = values)")
        self.n_slots_total = n_slots_total
        self.dim = dim
        self.padding_idx = padding_idx
        self.init_std = init_std
        self.value_table = nn.Embedding(n_slots_total, dim, padding_idx=padding_idx)
        self.key_table = (nn.Embedding(n_slots_total, key_dim or dim, padding_idx=padding_idx)
                          if separate_keys else None)
        self.reset_parameters()

    @classmethod
    def from_tables(cls, values: nn.Embedding, keys: nn.Embedding | None = None) -> "LearnedSlots":
        """Slots over tables the caller built and initialised: its own initialisation (CMN's
        truncated normal, drawn in the order its earlier releases drew it, so seeded runs keep
        their numbers), or ``sparse=True`` gradients. Nothing is drawn or re-initialised here.

        ``keys`` is registered before ``values`` (``parameters()`` yields keys, then values).
        """
        if keys is not None and keys.num_embeddings != values.num_embeddings:
            raise ValueError(f"key table has {keys.num_embeddings} rows, value table {values.num_embeddings}")
        if keys is not None and keys.padding_idx != values.padding_idx:
            raise ValueError("key and value tables must share their padding_idx")
        slots = cls.__new__(cls)
        nn.Module.__init__(slots)
        slots.n_slots_total, slots.dim = values.num_embeddings, values.embedding_dim
        slots.padding_idx, slots.init_std = values.padding_idx, None
        slots.key_table = keys
        slots.value_table = values
        return slots

    @property
    def separate_keys(self) -> bool:
        return self.key_table is not None

    def reset_parameters(self) -> None:
        if self.init_std is None:
            raise ValueError("slots built by from_tables are initialised by their owner")
        for table in (self.value_table, self.key_table):
            if table is None:
                continue
            nn.init.normal_(table.weight, std=self.init_std)
            if self.padding_idx is not None:
                with torch.no_grad():
                    table.weight[self.padding_idx].zero_()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> MemoryState:
        """Gather the addressed rows.

        Parameters
        ----------
        ids : long [B, M]
            Row ids of each slot (padded positions may hold any valid id, e.g. ``padding_idx``).
        mask : bool [B, M], optional
            True for real slots. Default: ``ids != padding_idx`` when a padding index is set,
            else every slot is real.

        Returns
        -------
        MemoryState
            values = value_table[ids] [B, M, Dv]; keys = key_table[ids] [B, M, Dk] or None.
        """
        if ids.dim() != 2:
            raise ValueError(f"ids must be [B, M], got {tuple(ids.shape)}")
        if mask is None:
            mask = (ids != self.padding_idx) if self.padding_idx is not None else torch.ones_like(ids, dtype=torch.bool)
        values = self.value_table(ids)                                          # v_j = C[id_j]
        keys = None if self.key_table is None else self.key_table(ids)         # k_j = M[id_j]
        return MemoryState(values, mask.to(torch.bool), keys)

    def extra_repr(self) -> str:
        return (f"n_slots_total={self.n_slots_total}, dim={self.dim}, separate_keys={self.separate_keys}, "
                f"padding_idx={self.padding_idx}")
