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


def training_curves_plot(losses: dict[str, tuple[list[int], list[float]]],
                         valid: tuple[list[int], list[float]], valid_label: str,
                         path: str | Path, best_epoch: int | None = None) -> None:
    """Two panels: training loss per epoch (left; one line per labelled stage, e.g. pretraining
    and training) and the validation metric per epoch (right, the best epoch starred).
    ``losses`` maps a label to (epochs, values); ``valid`` is (epochs, values), empty when
    nothing was validated. Drawn on a figure of its own with the Agg canvas (never pyplot, whose
    global backend a notebook's plots depend on) and written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    loss_ax, valid_ax = fig.subplots(1, 2)
    for label, (epochs, values) in losses.items():
        loss_ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3, label=label)
    if losses:
        loss_ax.legend(fontsize=8)
    else:
        _empty(loss_ax, "no training loss (fitted in closed form)")
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    epochs, values = valid
    if epochs:
        valid_ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3)
        if best_epoch in epochs:
            valid_ax.plot([best_epoch], [values[epochs.index(best_epoch)]], "*", markersize=12,
                          label=f"best (epoch {best_epoch})")
            valid_ax.legend(fontsize=8)
    else:
        _empty(valid_ax, "no validation data")
    valid_ax.set(title=f"validation {valid_label}", xlabel="epoch", ylabel=valid_label)
    for ax in (loss_ax, valid_ax):
        if ax.lines:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs, not 1.5
            ax.grid(alpha=0.3)
    if len(epochs) == 1:          # a closed-form fit: one point, worth reading as a number
        valid_ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        valid_ax.annotate(f"{values[0]:.4f}", (epochs[0], values[0]), textcoords="offset points",
                          xytext=(0, 8), ha="center", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
