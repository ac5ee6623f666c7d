"""``memrec report``: finished runs side by side — a Markdown table of their test metrics,
settings and seconds, and one figure of their training curves from each run's ``log.jsonl``.

The table has a row per (run, protocol): the accuracy metrics every paper reports at 10 (and
Recall@20), the catalogue metrics where the protocol ranks the whole catalogue, the best epoch,
training seconds, and the settings in which the runs differ (the ones they share are listed once
below the table, less the trainer's defaults, so a reader sees at a glance what changed
between rows). Runs are named by the shortest tails of their paths that tell them apart.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

from .errors import DataError
from .fileio import atomic_write_bytes
from .training.config import TrainConfig

ACCURACY = ("HR@10", "NDCG@10", "MRR@10", "Recall@20")
CATALOGUE = ("Coverage@10", "Gini@10")


def run_labels(folders: list[Path]) -> list[str]:
    """The shortest path tails that tell the runs apart (``tune/seed_0`` beside ``ease/seed_0``)."""
    parts = [Path(f).resolve().parts for f in folders]
    for n in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(f) for f in folders]


def read_run(folder: Path) -> dict:
    """A finished run's results.json and the configuration run.json recorded."""
    results = folder / "results.json"
    if not results.is_file():
        raise DataError(f"{folder}: not a finished run (no results.json)")
    try:
        data = json.loads(results.read_text())
        config = json.loads((folder / "run.json").read_text()).get("config", {}) \
            if (folder / "run.json").is_file() else {}
    except json.JSONDecodeError as e:
        raise DataError(f"{folder}: unreadable run record ({e})") from None
    if "metrics" not in data:
        raise DataError(f"{folder}: results.json has no test metrics (a knowledge-graph or tuning run?)")
    return {"folder": folder, "results": data, "config": config}


def _settings(run: dict) -> dict[str, object]:
    """model.* and train.* settings of a run (its recorded config, else its results' params)."""
    config = run["config"] or {"model": run["results"].get("params", {})}
    return {f"{section}.{key}": value for section in ("model", "train")
            for key, value in config.get(section, {}).items() if key != "name"}


def comparison_table(runs: list[dict]) -> str:
    """The Markdown table (with the shared settings below it)."""
    settings = [_settings(r) for r in runs]
    keys = sorted(set().union(*settings))
    differing = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]
    defaults = {f"train.{k}": v for k, v in asdict(TrainConfig()).items()}
    shared = [k for k in keys if k not in differing and k in settings[0] and settings[0][k] != defaults.get(k)]
    header = ["run", "model", "data", "protocol", *ACCURACY, *CATALOGUE, "best epoch", "train s", "settings"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, setting, label in zip(runs, settings, run_labels([r["folder"] for r in runs])):
        res = run["results"]
        for protocol, values in res["metrics"].items():
            cells = [label, res["model"], res["data"], protocol,
                     *(f"{values[m]:.4f}" if m in values else "" for m in (*ACCURACY, *CATALOGUE)),
                     str(res.get("best_epoch", "")), f"{res.get('train_seconds', float('nan')):.1f}",
                     ", ".join(f"{k}={_short(setting.get(k))}" for k in differing if k in setting)]
            lines.append("| " + " | ".join(cells) + " |")
    if shared:
        lines += ["", "Shared by every run (besides the trainer's defaults): "
                  + ", ".join(f"{k}={_short(settings[0][k])}" for k in shared)]
    return "\n".join(lines) + "\n"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _curves(folder: Path) -> tuple[list, list, list, list, str]:
    """(epochs, losses, valid epochs, valid values, metric) of a run's training stage."""
    log = folder / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    records = [r for r in records if r.get("stage", "train") == "train"]
    trained = [r for r in records if "loss" in r]
    validated = [r for r in records if "valid" in r]
    metric = ""
    valid_values = []
    if validated:
        values = next(iter(validated[0]["valid"].values()))
        metric = "NDCG@10" if "NDCG@10" in values else next(iter(values))
        valid_values = [next(iter(r["valid"].values())).get(metric) for r in validated]
    return ([r["epoch"] for r in trained], [r["loss"] for r in trained],
            [r["epoch"] for r in validated], valid_values, metric)


def curves_figure(runs: list[dict], path: Path) -> None:
    """Training loss and validation metric per epoch, one line per run, as a PNG (drawn on a
    figure of its own, never pyplot's global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    loss_ax, valid_ax = fig.subplots(1, 2)
    metrics = set()
    labels = run_labels([r["folder"] for r in runs])
    for run in runs:
        epochs, losses, valid_epochs, valid, metric = _curves(run["folder"])
        label = labels[runs.index(run)]
        if epochs:
            loss_ax.plot(epochs, losses, marker="o", markersize=2, label=label)
        if valid_epochs:
            valid_ax.plot(valid_epochs, valid, marker="o", markersize=3, label=label)
            metrics.add(metric)
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    valid_ax.set(title="validation " + "/".join(sorted(metrics)), xlabel="epoch")
    for ax in (loss_ax, valid_ax):
        if ax.lines:
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


__all__ = ["read_run", "comparison_table", "curves_figure"]
