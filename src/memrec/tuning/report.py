"""The files a search leaves in its output folder: ``trials.csv`` (every trial, its settings,
state, value and seconds), ``best.toml`` (a config ``memrec train --config`` accepts),
``results.json`` (the best settings, their validation value and the seeds' test metrics), and
``history.png`` / ``importances.png`` (Optuna's optimisation history and parameter
importances)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from ..fileio import atomic_write_bytes, atomic_write_json


def write_trials(study, out: Path) -> None:
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs",
                                          "duration"))
    atomic_write_bytes(out / "trials.csv", frame.to_csv(index=False).encode())


def write_results(out: Path, *, model: str, data: str, study_name: str, budget: dict,
                  best_trial, metric: str, seeds: dict) -> None:
    atomic_write_json(out / "results.json", {
        "model": model, "data": data, "study": study_name, "budget": budget,
        "selected_on": f"validation {metric}", "best_trial": best_trial.number,
        "best_params": best_trial.params, "best_valid": best_trial.value,
        "test": seeds})


def write_plots(study, out: Path, echo) -> None:
    """history.png and importances.png; importances need two finished trials that differ."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    charts = {"history.png": plots.plot_optimization_history}
    if len(finished) >= 2 and finished[0].params:
        charts["importances.png"] = plots.plot_param_importances
    for name, chart in charts.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # Optuna marks its matplotlib charts experimental
            try:
                axes = chart(study)
            except (ValueError, RuntimeError) as e:   # e.g. importances of a constant parameter
                echo(f"skipped {name}: {e}")
                continue
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        atomic_write_bytes(out / name, buffer.getvalue())


__all__ = ["write_trials", "write_results", "write_plots"]
