"""``memrec tune``: an Optuna search over a model's space, selected on validation only.

One study per (model, data): a TPE sampler proposes settings, each trial trains on the split's
training part and reports its validation metric after every validated epoch to a median pruner,
and the trial's value is its best validation score (the epoch early stopping keeps). The test
part is never read during the search. When the search ends, the best trial's configuration is
retrained once per seed by the ordinary training pipeline (one run folder each, tested there),
and the seeds' test metrics are summarised as mean ± std; the first seed's run is the best
trial's own where it trained exactly what that retraining would (:mod:`.trial_runs`).

Studies live in Optuna's storage (SQLite by default, in the output folder), so a killed search
resumes where it stopped, and a second ``memrec tune`` on the same storage and study runs trials
beside the first; together they stop at ``--trials`` finished trials.

``--timeout`` is the study's time budget, a hard one: the seconds every trial took are recorded in
the storage, so a resumed study continues with what is left, not a fresh budget; no trial starts
once it is spent; and a trial still training when it runs out stops after its current epoch
(``train.max_seconds``), keeping its best epoch. The seeds then retrain such a trial for the
epochs it ran, without the clock, so a slow model is tested as the search saw it and the same
budget holds for every model in a comparison.

A killed search loses at most an epoch: each trial records its seconds after every epoch, and
an SQL storage keeps a heartbeat per running trial, so the next search on the storage marks a
trial whose heartbeat stopped (its process was killed) as failed, still counts its seconds
against the budget, and retries its settings (Optuna's ``RetryHeartbeatStaleTrialCallback``): the base
configuration is not lost to a kill during the first trial.
"""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..models import REGISTRY
from ..recommender import Recommender
from ..runs import train_run
from ..training.callbacks import Callback
from ..training.config import CLOCKS, RunConfig, load_config, toml_literal
from .space import Param

#: the trial states that count towards ``--trials``
_DONE = ("COMPLETE", "PRUNED")
#: seconds between a running trial's heartbeats, and the silence after which another search
#: on the storage takes the trial's process for dead (an epoch reports nothing: the heartbeat
#: is a thread of its own, so long epochs are fine)
HEARTBEAT_S, GRACE_S = 30, 120
#: how often a killed trial's settings are retried
MAX_RETRIES = 2


@dataclass(frozen=True)
class TuneSetup:
    """What a search needs: the model, the data, the base configuration (file + ``--set``), the
    space, and the budget."""

    model: str
    data_path: Path
    config_path: Path | None
    overrides: tuple[str, ...]
    space: tuple[Param, ...]
    trials: int
    timeout: float | None
    seeds: tuple[int, ...]

    def config(self, values: dict[str, object] | None = None) -> RunConfig:
        """The base configuration with ``values`` ({"model.dim": 64, …}) set on top."""
        extra = [f"{key}={toml_literal(value)}" for key, value in (values or {}).items()]
        return load_config(self.model, self.config_path, [*self.overrides, *extra])


def validation_score(config: RunConfig, split, callbacks=(), echo=None, trial=None) -> float:
    """Train ``config`` on ``split.train`` (no refit) and return the best validation value of
    ``train.valid_metric`` (the epoch early stopping keeps; a closed-form model's only one).
    ``trial``: record on it how many epochs ran and whether the clock stopped them."""
    return best_validation(fit_trial(config, split, callbacks, echo, trial))


def fit_trial(config: RunConfig, split, callbacks=(), echo=None, trial=None, run_dir=None) -> Recommender:
    """``config`` fitted on ``split.train`` (no refit; into ``run_dir`` when given: its epoch log
    and checkpoint); ``trial``: told how many epochs ran and whether the clock stopped them."""
    config = replace(config, train=replace(config.train, refit=False))
    rec = Recommender.from_config(config).fit_split(split, run_dir=run_dir, progress=False,
                                                    echo=echo or _quiet, callbacks=callbacks)
    if trial is not None:
        trial.set_user_attr("epochs_run", rec.result_.epochs_run)
        trial.set_user_attr("stopped_by_time", rec.result_.stopped_by_time)
    return rec


def best_validation(rec: Recommender) -> float:
    """A fitted recommender's validation value of ``train.valid_metric`` at its kept epoch."""
    history = rec.result_.history
    record = next((r for r in history if r["epoch"] == rec.result_.best_epoch and "valid" in r), None)
    if record is None:
        raise ConfigError("tuning selects on validation, and this split has no validation part "
                          "(use a split with one, e.g. --split loo)")
    values = next(iter(record["valid"].values()))
    return float(values[rec.config.train.valid_metric])


def _quiet(line: str) -> None:
    """Trials train silently; the search prints one line per trial."""


class Pruning(Callback):
    """Reports each validated training epoch to an Optuna trial; stops the fit (by raising
    ``TrialPruned``) when the pruner says the trial trails the others at that epoch."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, record: dict) -> None:
        import optuna
        if record.get("stage", "train") != "train" or "valid" not in record:
            return                                   # pretraining epochs are not the trial's
        score = next(iter(record["valid"].values()))[self.metric]
        self.trial.report(score, record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")


class Objective:
    """An Optuna objective: one trial = one training run scored on validation. ``runs``
    (:class:`~memrec.tuning.trial_runs.TrialRuns`): trials train into run folders there, and the
    best one's stands for the first seed's retraining."""

    def __init__(self, setup: TuneSetup, split, echo, runs=None):
        self.setup, self.split, self.echo, self.runs = setup, split, echo, runs

    def __call__(self, trial) -> float:
        values = {p.key: p.suggest(trial) for p in self.setup.space}
        config = self.setup.config(values)
        if self.setup.timeout is not None:      # what is left of the study's budget bounds this trial
            left = max(self.setup.timeout - seconds_spent(trial.study, but=trial.number), 1e-9)
            config = replace(config, train=replace(config.train, max_seconds=left))
        clock = CLOCKS[config.train.clock]           # the budget's seconds: wall, or CPU
        seconds = TrialSeconds(trial, clock)
        run_dir = self.runs.start(trial.number) if self.runs is not None else None
        try:
            rec = fit_trial(config, self.split, [seconds, Pruning(trial, config.train.valid_metric)],
                            trial=trial, run_dir=run_dir)
            score = best_validation(rec)
            if self.runs is not None:
                self.runs.finish(trial, rec, config, score)
            return score
        except BaseException:                        # pruned, failed: nothing of it to keep
            if self.runs is not None:
                self.runs.drop(trial.number)
            raise
        finally:                                     # pruned trials too
            seconds.record()


class TrialSeconds(Callback):
    """Records the trial's seconds so far (on the budget's clock) after every epoch and at its
    end, so a trial whose process is killed still counts against the budget."""

    def __init__(self, trial, clock):
        self.trial, self.clock, self.start = trial, clock, clock()

    def record(self) -> None:
        self.trial.set_user_attr("seconds", self.clock() - self.start)

    def on_epoch_end(self, record: dict) -> None:
        self.record()


def run_search(setup: TuneSetup, split, storage: str, study_name: str, echo, runs=None) -> "optuna.Study":
    """Run (or continue) the study on ``split`` until it holds ``setup.trials`` finished trials
    or ``setup.timeout`` seconds pass; returns the study. ``runs``: see :class:`Objective`."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=_with_heartbeat(storage), direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=setup.config().train.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
    done = _finished(study)
    if done:
        echo(f"study {study_name!r}: {done} trial(s) already finished; continuing")
    base = base_point(setup)
    if not _holds(study, base, ("COMPLETE", "PRUNED", "RUNNING", "WAITING")):
        # the first trial is the base configuration (the shipped recipe, the registry defaults):
        # a model whose budget allows one trial is judged at its recipe, not at a random draw;
        # a base trial that failed (a configuration error fixed since) is queued again
        study.enqueue_trial(base)
    if done >= setup.trials:
        return study
    if setup.timeout is not None and done and seconds_spent(study) >= setup.timeout:
        echo(f"study {study_name!r}: its {setup.timeout:g} s budget is spent")
        return study
    metric = setup.config().train.valid_metric
    limit = optuna.study.MaxTrialsCallback(setup.trials, states=tuple(
        getattr(optuna.trial.TrialState, s) for s in _DONE))
    callbacks = [limit, _progress_line(setup.trials, metric, echo)]
    if setup.timeout is not None:
        callbacks.append(_budget_stop(setup.timeout))
    with _config_errors_said_once():
        study.optimize(Objective(setup, split, echo, runs), n_trials=setup.trials - done, callbacks=callbacks,
                       catch=(FloatingPointError,))
    return study


class _DropConfigErrorWarnings(logging.Filter):
    """Drops Optuna's warnings about a trial a :class:`ConfigError` failed: the one with its
    traceback and the "failed with value None" that follows. The error leaves ``optimize`` as
    it is, and the command line says it in one line."""

    def __init__(self):
        super().__init__()
        self.failed = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ConfigError):
            self.failed = True
            return False
        return not (self.failed and "failed with value None" in record.getMessage())


@contextmanager
def _config_errors_said_once():
    """:class:`_DropConfigErrorWarnings` on Optuna's handlers (where its loggers' records end)
    while the study runs."""
    handlers = logging.getLogger("optuna").handlers
    drop = _DropConfigErrorWarnings()
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def _with_heartbeat(url: str):
    """An SQL storage URL as Optuna's RDB storage with trial heartbeats and the retry of
    trials killed while running (other URLs, e.g. a journal file, as they are)."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        make_url(url)
    except ArgumentError:
        return url
    with warnings.catch_warnings():                 # the heartbeat is "experimental" in Optuna 4-5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))


def _budget_stop(budget: float):
    """Stops the study once its trials' seconds (on ``train.clock``, kept in the storage) reach
    ``budget``; Optuna's own timeout counts wall time of this process only."""
    def callback(study, trial) -> None:
        if seconds_spent(study) >= budget:
            study.stop()
    return callback


def base_point(setup: TuneSetup) -> dict[str, object]:
    """The base configuration's value of every searched parameter, moved to the nearest point
    of its domain (``train.weight_decay = 0`` becomes the space's lowest L2)."""
    settings = setup.config().to_json()
    point = {}
    for param in setup.space:
        value = param.nearest(settings[param.section].get(param.name))
        if value is not None:
            point[param.key] = value
    return point


def seconds_spent(study, but: int | None = None) -> float:
    """The training seconds the study's trials took (kept in the storage, so a resumed or
    parallel search counts them), leaving out trial number ``but``. A retry waiting to run
    carries its killed original's attributes, seconds included: it counts once it runs."""
    return sum(t.user_attrs.get("seconds", 0.0) for t in study.get_trials(deepcopy=False)
               if t.number != but and t.state.name != "WAITING")


def _holds(study, point: dict, states: tuple[str, ...]) -> bool:
    """Whether a trial in one of ``states`` has the settings ``point`` (queued ones included)."""
    for trial in study.get_trials(deepcopy=False):
        params = trial.system_attrs.get("fixed_params", trial.params)
        if trial.state.name in states and params.keys() == point.keys() and all(
                _same(params[k], v) for k, v in point.items()):
            return True
    return False


def _same(a, b) -> bool:
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return bool(np.isclose(float(a), float(b))) if numbers else a == b


def _finished(study) -> int:
    return sum(t.state.name in _DONE for t in study.get_trials(deepcopy=False))


def _progress_line(total: int, metric: str, echo):
    """One line per finished trial: its value (or pruning), the best so far, its settings."""
    def callback(study, trial) -> None:
        state = trial.state.name
        result = (f"valid {metric} {trial.value:.4f}" if state == "COMPLETE"
                  else f"pruned at epoch {trial.last_step}" if state == "PRUNED" else state.lower())
        best = ""
        if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
            best = f"  (best {study.best_value:.4f}, trial {study.best_trial.number})"
        seconds = trial.user_attrs.get("seconds", float("nan"))
        settings = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        echo(f"trial {trial.number} [{_finished(study)}/{total}]  {result}{best}  {seconds:.1f}s  {settings}")
    return callback


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_config(setup: TuneSetup, best) -> RunConfig:
    """The best trial's configuration; a trial the budget's clock stopped trains the epochs it
    ran (``train.epochs``, no clock), so every seed trains what the search selected."""
    config = setup.config(best.params)
    if best.user_attrs.get("stopped_by_time"):
        config = replace(config, train=replace(config.train, epochs=int(best.user_attrs["epochs_run"])))
    return config


def seeded(config: RunConfig, seed: int) -> RunConfig:
    return replace(config, train=replace(config.train, seed=seed))


def retrain_best(config: RunConfig, setup: TuneSetup, out: Path, echo, best_number: int | None = None,
                 trial_runs=None) -> dict:
    """Retrain ``config`` (the best settings) with every seed of ``setup`` (one tested run folder
    each, under ``out/seed_S``; finished seeds are reused) and summarise the test metrics as mean
    ± std. The first seed's run is the best trial's own (number ``best_number``) when
    ``trial_runs`` kept it (:mod:`~memrec.tuning.trial_runs`). A ``seed_free`` model (a closed
    form) is trained once, with the first seed: every other seed would fit the same model, so
    that run stands for all of them (std 0)."""
    runs = {}
    for seed in setup.seeds:
        if runs and REGISTRY[config.model].cls.seed_free:
            echo(f"seed {seed}: {config.model} is a closed form, the same for every seed; "
                 f"seed {setup.seeds[0]}'s run stands for it")
            runs[seed] = runs[setup.seeds[0]]
            continue
        folder = out / f"seed_{seed}"
        config_s = seeded(config, seed)
        if (folder / "run.json").is_file() and _recorded_config(folder) != as_recorded(config_s):
            # a continued study (more trials, a larger budget) selected other settings
            aside = _free_name(folder)
            folder.rename(aside)
            echo(f"seed {seed}: {folder} trained other settings than the best now; kept as {aside.name}")
        if (folder / "results.json").is_file():
            echo(f"seed {seed}: reusing the finished run {folder}")
            runs[seed] = _read_json(folder / "results.json")
            continue
        if trial_runs is not None and not folder.exists() and (
                taken := trial_runs.take(best_number, config_s, folder)) is not None:
            echo(f"seed {seed}: trial {best_number} trained these settings with this seed; its run, "
                 f"tested, is {folder}")
            runs[seed] = taken
            continue
        resume = (folder / "checkpoint.pt").is_file()
        if folder.exists() and not resume:
            shutil.rmtree(folder)         # stopped before its first epoch ended: nothing to keep
        echo(f"seed {seed}: {'resuming' if resume else 'retraining'} the best settings in {folder}")
        runs[seed] = train_run(config_s, setup.data_path, folder, resume=resume, progress=False, echo=_quiet)
    return {"seeds": list(setup.seeds), "metrics": summarise([r["metrics"] for r in runs.values()]),
            "train_seconds": summarise_values([r["train_seconds"] for r in runs.values()])}


def _recorded_config(folder: Path) -> dict:
    return _read_json(folder / "run.json")["config"]


def as_recorded(config: RunConfig) -> dict:
    """``config`` as ``run.json`` records it (JSON's types: tuples become lists)."""
    import json
    return json.loads(json.dumps(config.to_json()))


def _free_name(folder: Path) -> Path:
    n = 1
    while (aside := folder.with_name(f"{folder.name}.superseded{n}")).exists():
        n += 1
    return aside


def _read_json(path: Path) -> dict:
    import json
    return json.loads(path.read_text())


def summarise(results: list[dict]) -> dict:
    """{protocol: {metric: {"mean", "std", "values"}}} over the seeds' metrics dicts (std with
    n − 1; 0 for one seed)."""
    out: dict = {}
    for protocol in results[0]:
        out[protocol] = {metric: summarise_values([r[protocol][metric] for r in results])
                         for metric in results[0][protocol]}
    return out


def summarise_values(values: list[float]) -> dict:
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "values": [float(v) for v in array]}


def best_config_toml(config: RunConfig) -> str:
    """A config file ``memrec train --config`` accepts: every effective setting of ``config``."""
    lines = []
    for section, values in config.to_json().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                value = "none"                # TOML has no null; the config reader maps it back
            elif isinstance(value, float) and not math.isfinite(value):
                continue
            lines.append(f"{key} = {toml_literal(value)}")
        lines.append("")
    return "\n".join(lines)


__all__ = ["TuneSetup", "run_search", "base_point", "best_config", "seeded", "retrain_best", "fit_trial", "best_validation", "as_recorded", "seconds_spent", "validation_score", "best_config_toml", "summarise"]
