"""States: the tensors of a memory, passed between reads and writes, stored between requests.

``MemoryState`` is the external memory the reads and writes act on. Writes return a new state (no
in-place mutation), so a memory can be unrolled over a sequence under autograd and replayed event
by event in serving with the same code.

:class:`TensorState` is what every model's per-user (or per-item) state is built on: a frozen
dataclass whose fields are batch-first tensors. It selects and gathers rows, concatenates
batches, and converts to and from bytes — a JSON header recording each field's dtype and shape,
then the raw little-endian data; never a pickle — so a state store can keep it without looking
inside. :class:`ItemWindow` is the state of models whose memory is the most recent items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import ClassVar, TypeVar

import numpy as np
import torch

S = TypeVar("S", bound="TensorState")

#: dtypes a state may hold, by the name the byte format records
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
           "int16": torch.int16, "uint8": torch.uint8, "bool": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAGIC = b"memrec-state/1\n"


class TensorState:
    """Base of frozen dataclasses whose fields are tensors with the batch first (or None).

    Rows are independent: row b is one user's (or item's) state. Subclasses only declare their
    fields, and in ``ragged`` those whose second dimension is a width that differs between
    batches (the events of a window): they are zero-padded on the right to a common width
    before rows of two batches are combined.
    """

    #: fields [B, W, ...] whose width W may differ between batches (padding: zeros / False)
    ragged: ClassVar[tuple[str, ...]] = ()
    #: the field whose rows are the memory's entries, [B, M, ...] (or [B, d]: one entry) —
    #: what a server shows as "the memory": integer rows are ids, float rows are vectors
    memory_field: ClassVar[str | None] = None

    def tensors(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __len__(self) -> int:
        return next(t for t in self.tensors().values() if t is not None).shape[0]

    def entries(self) -> torch.Tensor:
        """Row 0's memory entries, what a server shows as the memory: ids long [M] or vectors
        float [M, d] (a single vector [d] is one entry). Subclasses with a mask drop the empty
        entries."""
        rows = getattr(self, self.memory_field)[0]
        return rows[None] if rows.is_floating_point() and rows.dim() == 1 else rows.reshape(-1) \
            if not rows.is_floating_point() else rows

    def trimmed(self: S) -> S:
        """The state without padding a batch gave it (what a store keeps of one row); states
        with ``ragged`` fields override this."""
        return self

    def align(self: S, other: S) -> tuple[S, S]:
        """The two states made shape-compatible row for row: ``ragged`` fields padded to the
        wider of the two."""
        if not self.ragged:
            return self, other
        width = max(max(getattr(s, n).shape[1] for n in self.ragged) for s in (self, other))
        return self.padded(width), other.padded(width)

    def padded(self: S, width: int) -> S:
        """The state with its ``ragged`` fields right-padded to ``width``."""
        def pad(t: torch.Tensor) -> torch.Tensor:
            extra = width - t.shape[1]
            return t if extra == 0 else torch.cat([t, t.new_zeros(t.shape[0], extra, *t.shape[2:])], dim=1)
        return replace(self, **{n: pad(getattr(self, n)) for n in self.ragged})

    def where(self: S, condition: torch.Tensor, other: S) -> S:
        """Row b from ``self`` where ``condition[b]``, else from ``other`` (condition bool [B])."""
        new, old = self.align(other)
        out = {}
        for name, a in new.tensors().items():
            b = old.tensors()[name]
            if (a is None) != (b is None) or (a is not None and a.shape != b.shape):
                raise ValueError(f"{type(self).__name__}.{name}: row-wise choice needs equal shapes")
            out[name] = None if a is None else torch.where(
                condition.to(torch.bool).reshape(-1, *([1] * (a.dim() - 1))), a, b)
        return replace(new, **out)

    def index(self: S, rows: torch.Tensor) -> S:
        """The states of ``rows`` (long [b]) as a batch of b."""
        return replace(self, **{n: None if t is None else t[rows] for n, t in self.tensors().items()})

    def to(self: S, device) -> S:
        return replace(self, **{n: None if t is None else t.to(device) for n, t in self.tensors().items()})

    @classmethod
    def cat(cls: type[S], states: list[S]) -> S:
        """One batch from several (rows in order)."""
        first = states[0]
        for s in states[1:]:
            first, _ = first.align(s)
        aligned = [first.align(s)[1] for s in states]
        return replace(first, **{n: None if t is None else torch.cat([s.tensors()[n] for s in aligned])
                                 for n, t in first.tensors().items()})

    # -- bytes ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The state as bytes: a JSON header (type, each field's dtype and shape) and raw data."""
        header, chunks = {"type": type(self).__name__, "fields": {}}, []
        for name, t in self.tensors().items():
            if t is None:
                header["fields"][name] = None
                continue
            if t.dtype not in _NAMES:
                raise TypeError(f"{type(self).__name__}.{name}: dtype {t.dtype} cannot be stored")
            header["fields"][name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape)}
            flat = t.detach().cpu().contiguous()
            if flat.dtype == torch.bfloat16:              # numpy has no bfloat16: store its bits
                flat = flat.view(torch.int16)
            chunks.append(flat.numpy().astype(flat.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
        return _MAGIC + json.dumps(header).encode() + b"\n" + b"".join(chunks)

    @classmethod
    def from_bytes(cls: type[S], data: bytes, device=None) -> S:
        """The state :meth:`to_bytes` wrote; a wrong type, dtype or length is a ValueError."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a memrec state")
        end = data.index(b"\n", len(_MAGIC))
        header = json.loads(data[len(_MAGIC):end])
        if header.get("type") != cls.__name__:
            raise ValueError(f"a {header.get('type')} state cannot be read as {cls.__name__}")
        offset, values = end + 1, {}
        for f in fields(cls):
            spec = header["fields"].get(f.name, "missing")
            if spec == "missing":
                raise ValueError(f"{cls.__name__} state has no field {f.name!r}")
            if spec is None:
                values[f.name] = None
                continue
            dtype = _DTYPES[spec["dtype"]]
            stored = torch.int16 if dtype == torch.bfloat16 else dtype
            # a CPU probe whatever the default device: only a CPU tensor has a NumPy dtype
            np_dtype = torch.empty(0, dtype=stored, device="cpu").numpy().dtype.newbyteorder("<")
            size = int(np.prod(spec["shape"], dtype=np.int64)) * np_dtype.itemsize
            if offset + size > len(data):
                raise ValueError(f"{cls.__name__} state is truncated at field {f.name!r}")
            array = np.frombuffer(data, dtype=np_dtype, count=size // np_dtype.itemsize, offset=offset)
            t = torch.from_numpy(array.astype(np_dtype.newbyteorder("="))).reshape(spec["shape"])
            values[f.name] = (t.view(torch.bfloat16) if dtype == torch.bfloat16 else t).to(device)
            offset += size
        if offset != len(data):
            raise ValueError(f"{cls.__name__} state has {len(data) - offset} bytes too many")
        return cls(**values)


@dataclass(frozen=True)
class MemoryState(TensorState):
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
    memory_field = "values"

    def __post_init__(self):
        if self.values.dim() != 3:
            raise ValueError(f"values must be [B, M, D], got {tuple(self.values.shape)}")
        if self.mask.shape != self.values.shape[:2]:
            raise ValueError(f"mask {tuple(self.mask.shape)} does not match values {tuple(self.values.shape)}")
        if self.keys is not None and self.keys.shape[:2] != self.values.shape[:2]:
            raise ValueError(f"keys {tuple(self.keys.shape)} do not match values {tuple(self.values.shape)}")

    def entries(self) -> torch.Tensor:
        return self.values[0][self.mask[0]]

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


@dataclass(frozen=True)
class ItemWindow(TensorState):
    """The most recent items of each row, oldest first, right-padded: the state of models whose
    memory is the events themselves (STAMP, the purchase DMN, MARS). Rows may hold different
    numbers of items; the width is the longest row's.

    Shapes
    ------
    items : long [B, W] (item ids or event tokens); mask : bool [B, W]
    """

    items: torch.Tensor
    mask: torch.Tensor
    ragged = ("items", "mask")
    memory_field = "items"

    @classmethod
    def empty(cls, batch_size: int, device=None) -> "ItemWindow":
        return cls(torch.zeros(batch_size, 0, dtype=torch.long, device=device),
                   torch.zeros(batch_size, 0, dtype=torch.bool, device=device))

    @classmethod
    def from_history(cls, history: torch.Tensor, mask: torch.Tensor,
                     capacity: int | None = None) -> "ItemWindow":
        """The last ``capacity`` (None: all) real items of each padded history [B, L] (padding
        may sit anywhere), left-aligned: what replaying :meth:`append` over it gives."""
        mask = mask.to(torch.bool)
        length = mask.sum(1)
        kept = length if capacity is None else length.clamp(max=capacity)
        width = int(kept.max()) if len(kept) else 0
        # position of each real item among its row's real items; keep the last ``kept`` ones
        rank = mask.cumsum(1) - 1
        slot = rank - (length - kept)[:, None]
        keep = mask & (slot >= 0)
        items = history.new_zeros(len(history), width)
        rows = torch.arange(len(history), device=history.device)[:, None].expand_as(history)
        items[rows[keep], slot[keep]] = history[keep]
        window_mask = torch.arange(width, device=history.device)[None, :] < kept[:, None]
        return cls(items, window_mask)

    def append(self, items: torch.Tensor, capacity: int | None = None) -> "ItemWindow":
        """One more item per row (items long [B]); beyond ``capacity`` the oldest is dropped."""
        B, W = self.items.shape
        length = self.mask.sum(1)
        rows = torch.arange(B, device=items.device)
        grown = torch.cat([self.items, self.items.new_zeros(B, 1)], dim=1)
        grown_mask = torch.cat([self.mask, self.mask.new_zeros(B, 1)], dim=1)
        grown[rows, length] = items
        grown_mask[rows, length] = True
        if capacity is not None:
            full = length + 1 > capacity                     # drop the oldest: shift left by one
            shifted = torch.cat([grown[:, 1:], grown.new_zeros(B, 1)], dim=1)
            shifted_mask = torch.cat([grown_mask[:, 1:], grown_mask.new_zeros(B, 1)], dim=1)
            grown = torch.where(full[:, None], shifted, grown)
            grown_mask = torch.where(full[:, None], shifted_mask, grown_mask)
        width = int(grown_mask.sum(1).max()) if B else 0
        return ItemWindow(grown[:, :width], grown_mask[:, :width])

    def entries(self) -> torch.Tensor:
        return self.items[0][self.mask[0]]

    def trimmed(self) -> "ItemWindow":
        """The same window without all-padding columns at the end (width = the longest row)."""
        width = int(self.mask.sum(1).max()) if self.mask.numel() else 0
        return ItemWindow(self.items[:, :width], self.mask[:, :width])



__all__ = ["TensorState", "MemoryState", "ItemWindow"]
