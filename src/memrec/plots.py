"""Figures for explanations (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes


def relation_attention_plot(trace: np.ndarray, events: list[str], relations: list[str],
                            path: str | Path, title: str = "") -> None:
    """Heat map of a memory read's attention over relations (rows) after each event
    (columns, oldest left): the survey's "album, then singer" picture for KSR.
    trace [n_events, R]. Written atomically as PNG (or any format matplotlib infers)."""
    import matplotlib
    matplotlib.use("Agg")                      # files only, no display
    import matplotlib.pyplot as plt
    trace = np.asarray(trace, dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(events) + 3), max(3.0, 0.3 * len(relations) + 1.5)))
    image = ax.imshow(trace.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(trace.max()), 1e-9))
    ax.set_yticks(range(len(relations)), relations, fontsize=7)
    ax.set_xticks(range(len(events)), events, rotation=90, fontsize=7)
    ax.set_xlabel("after consuming item (oldest → newest)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="attention")
    fig.tight_layout()
    buffer = io.BytesIO()
    suffix = Path(path).suffix.lstrip(".") or "png"
    fig.savefig(buffer, format=suffix, dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
