"""Item chunks for full ranking whose per-item intermediates would not fit in memory at once."""

from __future__ import annotations


def chunked_items(n_items: int, batch: int, per_item_floats: int, budget: int = 1 << 25):
    """Item ranges for full ranking whose [batch, chunk, per_item_floats] intermediates stay
    within ``budget`` floats (128 MB in float32)."""
    size = max(1, budget // max(1, batch * per_item_floats))
    for start in range(0, n_items, size):
        yield slice(start, min(start + size, n_items))


__all__ = ["chunked_items"]
