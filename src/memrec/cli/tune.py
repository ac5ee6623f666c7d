"""``memrec tune`` (hyper-parameter search with Optuna) and ``memrec report`` (finished runs side
by side) — parsing and printing only."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import ConfigError, DataError


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds expects a comma list of integers (e.g. 0,1,2), got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds expects distinct integers (e.g. 0,1,2), got {text!r}")
    return seeds


def _check_out(out: Path) -> None:
    """The output folder: new, or one a search already wrote (tuning resumes there)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; --out names a folder")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise DataError(f"{out}: folder {parent} is not writable")


@click.command()
@click.argument("model")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path), help="Dataset file or folder.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Base TOML config (split, budget, fixed settings).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Fix a setting (repeatable); a fixed setting leaves the search space.")
@click.option("--space", "space_path", type=click.Path(path_type=Path),
              help="SPACE.toml: parameters replacing the model's default search space.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Finished (complete or pruned) trials the study stops at.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The study's time budget in trial seconds (kept across resumes): no trial starts "
                   "once it is spent, and one still training then stops after its epoch.")
@click.option("--storage", default=None, help="Optuna storage URL (default: sqlite:///OUT/study.db).")
@click.option("--study", "study_name", default=None, help="Study name (default: MODEL-DATA).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds the best settings are retrained and tested with.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
def tune(model, data_path, config_path, overrides, space_path, trials, timeout, storage, study_name, seeds, out):
    """Search MODEL's hyper-parameters on the validation part of --data, then retrain the best
    settings with each of --seeds and test them. Needs the ``tune`` extra (Optuna)."""
    from ..ksr_knowledge import check_transe_source
    from ..runs import prepare_split
    from ..fileio import atomic_write_bytes
    from ..training.trainer import echo_stderr
    from ..tuning.report import write_plots, write_results, write_trials
    from ..tuning.space import search_space
    from ..tuning.study import TuneSetup, best_config, best_config_toml, retrain_best, run_search
    from ..tuning.trial_runs import TrialRuns
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("memrec tune needs Optuna: pip install 'memrec[tune]'") from None
    if not data_path.exists():
        raise DataError(f"{data_path}: no such file or directory")
    _check_out(out)
    space, fixed = _without_fixed(search_space(model, space_path), overrides)
    if not space and trials > 1:        # nothing to vary: every trial would train the same model
        click.echo(f"{model} has nothing to search here; one trial", err=True)
        trials = 1
    setup = TuneSetup(model, data_path, config_path, tuple(overrides), space, trials, timeout, _seeds(seeds))
    base = setup.config()               # the base config's errors before any work
    data, split = prepare_split(data_path, base.data)
    check_transe_source(base, data_path, out)       # KSR: a graph without slots fails before any write
    if fixed:
        click.echo(f"fixed by --set, not searched: {', '.join(fixed)}", err=True)
    out.mkdir(parents=True, exist_ok=True)
    setup = _with_transe_run(setup, base, out)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study_name or f"{model}-{data}"
    click.echo(f"tuning {model} on {data}: {trials} trials, selecting on validation "
               f"{base.train.valid_metric}; {len(setup.space)} parameters", err=True)
    trial_runs = TrialRuns(out, setup, split, data)
    study = run_search(setup, split, storage, study_name, echo_stderr, trial_runs)
    write_trials(study, out)
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        raise ConfigError(f"study {study_name!r} has no completed trial (all pruned or failed); "
                          "see trials.csv")
    best = study.best_trial
    config = best_config(setup, best)
    atomic_write_bytes(out / "best.toml", best_config_toml(config).encode())
    seeds_summary = retrain_best(config, setup, out, echo_stderr, best.number, trial_runs)
    trial_runs.clear()                  # the seeds are trained: no trial's run is needed
    write_results(out, model=model, data=data, study_name=study_name,
                  budget={"trials": trials, "timeout_s": timeout}, best_trial=best,
                  metric=base.train.valid_metric, seeds=seeds_summary)
    write_plots(study, out, echo_stderr)
    _echo_summary(best, base.train.valid_metric, seeds_summary, out)


def _with_transe_run(setup, base, out: Path):
    """KSR: the TransE vectors of the dataset's graph, trained or reused into OUT/transe as
    ``memrec train ksr`` does (``ksr_knowledge``), named in every trial's and seed's settings;
    ``setup`` as it is for a model that reads none or a configuration that names its run."""
    from dataclasses import replace

    from ..ksr_knowledge import with_transe_vectors
    from ..runs import train_graph_run
    from ..training.config import toml_literal
    from ..training.trainer import echo_stderr
    transe = with_transe_vectors(base, setup.data_path, out, echo=echo_stderr,
                                 train_graph=train_graph_run).model_params.get("transe")
    if transe == base.model_params.get("transe"):
        return setup
    return replace(setup, overrides=(*setup.overrides, f"model.transe={toml_literal(transe)}"))


def _without_fixed(space, overrides) -> tuple[tuple, list[str]]:
    """The space less the settings ``--set`` fixes, and their names."""
    fixed = {text.split("=", 1)[0].strip() for text in overrides}
    return tuple(p for p in space if p.key not in fixed), sorted(fixed & {p.key for p in space})


def _echo_summary(best, metric: str, seeds: dict, out: Path) -> None:
    settings = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    click.echo(f"best trial {best.number}: valid {metric} {best.value:.4f}  ({settings or 'no parameters'})")
    click.echo(f"test over seeds {', '.join(map(str, seeds['seeds']))} (mean ± std):")
    for protocol, values in seeds["metrics"].items():
        shown = [m for m in ("HR@10", "NDCG@10", "MRR@10", "Recall@20") if m in values]
        click.echo(f"  {protocol:<8} " + "  ".join(
            f"{m} {values[m]['mean']:.4f} ± {values[m]['std']:.4f}" for m in shown))
    click.echo(f"saved to {out} (trials.csv, best.toml, results.json, history.png)")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the table to this Markdown file and the curves beside it (OUT stem + _curves.png).")
def report(run_dirs, out):
    """Finished runs side by side: test metrics, settings that differ, seconds, and (with --out)
    their training curves as a PNG."""
    from ..fileio import atomic_write_bytes
    from ..run_report import comparison_table, curves_figure, read_run
    if out is not None:
        if out.is_dir():
            raise DataError(f"{out} is a folder; --out names a Markdown file")
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise DataError(f"{out}: folder {out.parent} does not exist")
    runs = [read_run(Path(d)) for d in run_dirs]
    table = comparison_table(runs)
    if out is None:
        click.echo(table, nl=False)
        return
    figure = out.with_name(out.stem + "_curves.png")
    curves_figure(runs, figure)
    atomic_write_bytes(out, (f"# memrec report\n\n{table}\n![training curves]({figure.name})\n").encode())
    click.echo(f"wrote {out} and {figure}")
