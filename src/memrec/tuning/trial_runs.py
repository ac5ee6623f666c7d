"""The best trial's own run stands for the first seed's retraining.

A trial trains its settings on the split's training part with the base configuration's seed, and
with deterministic kernels training is bitwise reproducible: retraining the best settings with
that seed would train the same model again. So every trial that can stand for that retraining
trains into a run folder (``trial_runs/trial_N``: the epoch log, the model, the split), kept
while it is the study's best; when the search ends, the best trial's folder becomes ``seed_S``
for the first seed ``S`` and is tested there (the test part is read for it alone, as for any
seed run). A neural row then pays for its first seed's training once, not twice.

A trial whose retraining would differ keeps nothing: another seed than the first, a retraining
that refits on train + valid or runs under a clock of its own, non-deterministic kernels, or a
trial the budget's clock stopped after an epoch it did not validate (its retraining validates its
last epoch and may keep it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..checkpoint import load_model
from ..data.split_io import load_split
from ..fileio import atomic_write_json
from ..runs import run_results, start_run_dir
from ..training.config import RunConfig
from ..training.trainer import TrainResult
from .study import as_recorded, best_config, seeded

#: the folder (in the tune's output) holding the trials' runs
FOLDER = "trial_runs"
#: what a kept trial's training recorded, read back when it becomes a seed's run
FIT_FILE = "fit.json"


def stands_for_retraining(trial_config: RunConfig, retrain: RunConfig, result: TrainResult) -> bool:
    """Whether retraining ``retrain`` repeats the trial's training (module docstring)."""
    t = retrain.train
    last_validated = not result.stopped_by_time or result.epochs_run % t.eval_every == 0
    return (trial_config.train.seed == t.seed and not t.refit and t.max_seconds <= 0
            and t.deterministic and last_validated)


class TrialRuns:
    """The tune's ``trial_runs`` folder: a trial's run is trained there, kept while it is the
    study's best, and handed over to the first seed."""

    def __init__(self, out: Path, setup, split, data_name: str):
        self.folder, self.setup, self.split, self.data_name = Path(out) / FOLDER, setup, split, data_name

    def path(self, number: int) -> Path:
        return self.folder / f"trial_{number}"

    def start(self, number: int) -> Path:
        """An empty folder for trial ``number``'s epoch log and checkpoint."""
        run = self.path(number)
        shutil.rmtree(run, ignore_errors=True)        # a retried number's leftovers
        run.mkdir(parents=True)
        return run

    def finish(self, trial, rec, config: RunConfig, score: float) -> None:
        """Keep trial ``trial``'s fitted ``rec`` when it can stand for the first seed's retraining
        and beats every finished trial; drop its folder otherwise, and any kept one it beats."""
        run, result = self.path(trial.number), rec.result_
        retrain = seeded(best_config(self.setup, trial), self.setup.seeds[0])   # what retrain_best runs
        best = _best_value(trial.study, but=trial.number)
        if not stands_for_retraining(config, retrain, result) or (best is not None and score <= best):
            self.drop(trial.number)
            return
        start_run_dir(run, self.split, self.data_name, self.setup.data_path, retrain)
        rec.save(run)
        atomic_write_json(run / FIT_FILE, {"best_epoch": result.best_epoch, "train_seconds": result.train_seconds})
        self._drop_beaten(trial.study, keep=trial.number)

    def drop(self, number: int) -> None:
        shutil.rmtree(self.path(number), ignore_errors=True)

    def take(self, best_number: int, seeded: RunConfig, seed_folder: Path) -> dict | None:
        """The best trial's run moved to ``seed_folder`` and tested there (its ``results.json``),
        when it was kept for exactly the configuration ``seeded``; else None."""
        run = self.path(best_number)
        if not (run / FIT_FILE).is_file() or _recorded(run) != as_recorded(seeded):
            return None
        run.rename(seed_folder)
        fit = json.loads((seed_folder / FIT_FILE).read_text())
        saved = load_model(seed_folder)
        split = load_split(seed_folder / "split.npz", saved.users, saved.items)
        results = run_results(saved.model, split, seeded, TrainResult(fit["best_epoch"], fit["train_seconds"]),
                              data_name=self.data_name, data_seed=seeded.data.seed, progress=False)
        (seed_folder / FIT_FILE).unlink()
        atomic_write_json(seed_folder / "results.json", results)
        return results

    def clear(self) -> None:
        """Remove every trial's run (once the seeds are trained, none is needed)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _drop_beaten(self, study, keep: int) -> None:
        """Drop the kept runs of finished trials (a running one, of a search beside this one,
        decides for itself when it ends)."""
        for trial in study.get_trials(deepcopy=False):
            if trial.number != keep and trial.state.is_finished():
                self.drop(trial.number)


def _best_value(study, but: int) -> float | None:
    values = [t.value for t in study.get_trials(deepcopy=False)
              if t.number != but and t.state.name == "COMPLETE" and t.value is not None]
    return max(values) if values else None


def _recorded(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())["config"]


__all__ = ["TrialRuns", "stands_for_retraining"]
