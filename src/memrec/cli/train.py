"""Run verbs: ``train``, ``evaluate``, ``recommend``, ``stream`` — parsing and printing only."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click
import pandas as pd

from ..errors import ConfigError, DataError
from .options import device_option


def _metrics_table(metrics: dict[str, dict[str, float]], ks=(5, 10, 20)) -> str:
    """Accuracy metrics, one row per protocol and K; below them, for the protocols that rank the
    whole catalogue, a second short table of the beyond-accuracy ones (another scale, apart)."""
    rows = []
    for protocol, values in metrics.items():
        for k in ks:
            row = {"protocol": protocol, "K": k}
            row.update({name: values.get(f"{name}@{k}") for name in
                        ("HR", "NDCG", "MRR", "Recall", "Precision", "MAP")})
            row["AUC"] = values.get("AUC")
            rows.append(row)
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}")
    catalogue = _catalogue_table(metrics, ks)
    if catalogue is None:
        return table
    return f"{table}\n\nbeyond accuracy (catalogue of the top-K lists):\n{catalogue}"


def _catalogue_table(metrics: dict[str, dict[str, float]], ks) -> str | None:
    from ..beyond_accuracy import CATALOGUE_METRICS
    rows = [{"protocol": protocol, "K": k, **{name: values[f"{name}@{k}"] for name in CATALOGUE_METRICS}}
            for protocol, values in metrics.items() if f"Coverage@{ks[0]}" in values for k in ks]
    if not rows:
        return None
    return pd.DataFrame(rows).to_string(index=False, formatters={
        "Coverage": "{:.4f}".format, "Gini": "{:.4f}".format, "Novelty": "{:.2f}".format,
        "AvgPop": "{:.1f}".format})


# -- train / evaluate / recommend ---------------------------------------------------------------
@click.command()
@click.argument("model")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Dataset file or folder.")
@click.option("--format", "fmt", default=None, help="Input format (default: auto-detect).")
@click.option("--split", default=None,
              type=click.Choice(["auto", "loo", "temporal", "random", "session", "given"]),
              help="Split (default: the file's own split, else leave-one-out).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.lr=0.01 (repeatable).")
@click.option("--epochs", type=int, default=None)
@click.option("--seed", type=int, default=None, help="Training seed (train.seed); the split's is data.seed.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--tensorboard", is_flag=True,
              help="Also write TensorBoard events to OUT/tensorboard (train.tensorboard; pip install tensorboard).")
@click.option("--device", default=None,
              help="auto | cpu | cuda | cuda:N | mps (train.device; default auto). A resumed run may change it.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel on N processes of this machine (torchrun's launcher; gloo on "
                   "CPU, NCCL with one GPU each). A resumed run may change it.")
def train(model, data_path, fmt, split, config_path, overrides, epochs, seed, resume, out, progress,
          tensorboard, device, nproc):
    """Train MODEL on a dataset, test it, and save the run to --out (with log.jsonl, one line
    per epoch, and curves.png: loss and the validation metric per epoch).

    A knowledge-graph model (``memrec train transe --data KG``, a RecBole .kg/.link folder or a
    KGCN kg.txt folder) trains on the graph's triples, reports filtered link prediction and
    exports its vectors for KSR.

    Under ``torchrun --nproc-per-node N -m memrec train ...`` (or with ``--nproc N``) every rank
    trains its share of each batch; rank 0 prints and writes the run folder."""
    from .. import distributed
    from ..models import spec
    from ..runs import check_distributed, check_new_run_dir, is_finished, train_run
    from ..training.config import load_config
    overrides = list(overrides)
    if fmt:
        overrides.append(f"data.format={json.dumps(fmt)}")
    if split:
        overrides.append(f"data.split={json.dumps(split)}")
    if tensorboard:
        overrides.append("train.tensorboard=true")
    config = load_config(model, config_path, overrides, epochs=epochs, seed=seed)
    if resume:
        if is_finished(out):
            click.echo(f"{out} is finished (results.json); nothing to resume")
            return
        config = _resumed_config(config, out, given=bool(config_path or overrides or epochs or seed))
    elif not Path(data_path).exists():
        raise DataError(f"{data_path}: no such file or directory")
    if device is not None:       # where the run trains, not what it is: a resume may move it
        config = replace(config, train=replace(config.train, device=device))
    if nproc > 1:
        if distributed.launched_by_torchrun():
            raise ConfigError("--nproc starts the ranks itself: under torchrun, leave it out")
        check_new_run_dir(out, resume)           # before any rank starts
        check_distributed(config, distributed.World(0, nproc))
        sys.exit(distributed.launch(nproc, _without_nproc(sys.argv[1:])))
    world = distributed.start(config.train.device) if distributed.launched_by_torchrun() else distributed.World()
    finished = False
    try:
        results = train_run(config, data_path, out, resume=resume,
                            progress=progress if world.is_main else False,
                            echo=None if world.is_main else _silent)
        finished = True
    finally:
        distributed.stop(finished)
    if not world.is_main:
        return
    if spec(config.model).data == "knowledge_graph":
        _echo_link_prediction(results, out)
        return
    click.echo(f"{results['model']} on {results['data']} ({results['split']} split), "
               f"best epoch {results['best_epoch']}, {results['train_seconds']:.1f}s training")
    click.echo(_metrics_table(results["metrics"]))
    click.echo(f"saved to {out}")


def _without_nproc(args: list[str]) -> list[str]:
    """The command line a rank runs: this one without ``--nproc N`` / ``--nproc=N``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def _silent(*_args, **_kwargs) -> None:
    """What ranks other than 0 print."""


def _resumed_config(config, out: Path, given: bool):
    """The run's recorded configuration (``run.json``): a resume continues it, budget included.
    Options given with ``--resume`` must agree with it; none given means "as recorded"."""
    from ..runs import recorded_config
    recorded = recorded_config(out)
    differences = config.differences(recorded) if given else (
        [] if config.model == recorded.model else [f"model ({config.model!r} vs {recorded.model!r})"])
    if differences:
        raise ConfigError(f"--resume continues the run recorded in {out / 'run.json'}, but these "
                          f"settings differ from it (given vs recorded): {'; '.join(differences)}; "
                          "resume with the same options, or with none")
    return recorded


def _echo_link_prediction(results: dict, out: Path) -> None:
    """A knowledge-graph run's summary: filtered link prediction beside the random ranker's."""
    test, rand = results["test"], results["random_ranker_test"]
    click.echo(f"{results['model']} on {results['data']}: best epoch {results['best_epoch']}, "
               f"{results['train_seconds']:.1f}s training")
    click.echo(f"filtered link prediction on {test['n_triples']:,} test triples (random ranker):")
    for metric in ("MR", "MRR", "Hits@1", "Hits@3", "Hits@10"):
        click.echo(f"  {metric:<8} {test.get(metric, float('nan')):10.4f}   ({rand.get(metric, float('nan')):.4f})")
    click.echo(f"saved to {out}; vectors in {Path(out) / 'export'}")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--protocol", "protocols", multiple=True,
              type=click.Choice(["full", "sampled", "session"]), help="Protocols (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@device_option()
def evaluate(run_dir, protocols, as_json, progress, device):
    """Evaluate a trained run on its test data."""
    from ..devices import resolve_device
    from ..runs import evaluate_run
    device = resolve_device(device, "--device")
    metrics = evaluate_run(run_dir, protocols or None,    # none named: all the split can run
                           progress=progress, device=device)
    click.echo(json.dumps(metrics, indent=2) if as_json else _metrics_table(metrics))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--user", "users", multiple=True, help="Raw user id (repeatable).")
@click.option("--session", default=None,
              help="A live session's clicks, raw item ids oldest first: --session 214,88,31.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--include-seen", is_flag=True, help="Do not filter the user's known items.")
@click.option("--explain", is_flag=True, help="Show what the memory attended to for each item.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="With --explain (KSR): plot the attention over relations after each of the "
                   "user's recent events to this file (PNG).")
@click.option("--all-users", is_flag=True,
              help="Top-k for every user of the run, written to --out (one row per user and rank).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="With --all-users: the table to write, .parquet or .csv by its suffix.")
@device_option()
def recommend(run_dir, users, session, k, include_seen, explain, plot_path, all_users, out_path, device):
    """Top-k items for users of a trained run, or for a live session; with --all-users, for
    every user of the run, to a file."""
    import numpy as np

    from ..devices import resolve_device
    from ..recommender import Recommender
    device = resolve_device(device, "--device")
    if all_users:
        _check_all_users_options(users, session, explain, plot_path, out_path)
        _recommend_all_users(run_dir, k, include_seen, out_path, device)
        return
    if out_path is not None:
        raise ConfigError("--out writes the table of --all-users; add --all-users, or drop --out "
                          "to print the recommendations")
    if bool(users) == (session is not None):
        raise click.UsageError("give either --user (repeatable) or --session")
    if plot_path is not None and (not explain or len(users) != 1):
        raise click.UsageError("--plot needs --explain and exactly one --user")
    rec = Recommender.load(run_dir, device)
    if plot_path is not None:
        _plot_attention(rec, users[0], plot_path)
    if session is not None:
        _recommend_session(rec, [c.strip() for c in session.split(",") if c.strip()], k, explain)
        return
    ids, scores = rec.recommend(list(users), k, exclude_seen=not include_seen)
    for user, row_ids, row_scores in zip(users, ids, scores):
        left = np.isfinite(row_scores.astype(float))        # seen items score -inf: not listed
        if not left.all():
            click.echo(f"user {user}: only {int(left.sum())} items are left to recommend "
                       f"(-k {k}; the others are the user's own, see --include-seen)", err=True)
            row_ids, row_scores = row_ids[left], row_scores[left]
        click.echo(f"user {user}")
        reasons = rec.explain(user, row_ids) if explain else [None] * len(row_ids)
        for rank, (item, score, why) in enumerate(zip(row_ids, row_scores, reasons), 1):
            click.echo(f"  {rank:>3}. {item}\t{score:.4f}")
            if why:
                click.echo("       attended: " + ", ".join(f"{e.kind} {e.id} ({e.weight:.2f})" for e in why))


def _check_all_users_options(users, session, explain, plot_path, out_path) -> None:
    """--all-users stands alone: every user, to a file; refused before any work."""
    from ..all_users import check_table_path
    if users or session is not None:
        raise ConfigError("--all-users recommends for every user of the run; drop --user/--session")
    if explain or plot_path is not None:
        raise ConfigError("--explain/--plot show one user's attention; they do not go with --all-users")
    if out_path is None:
        raise ConfigError("--all-users needs --out FILE (.parquet or .csv) for its table")
    check_table_path(out_path)


def _recommend_all_users(run_dir: Path, k: int, include_seen: bool, out_path: Path, device) -> None:
    from ..all_users import all_users_table, write_table
    table = all_users_table(run_dir, k, exclude_seen=not include_seen, device=device,
                            warn=lambda line: click.echo(f"memrec: {line}", err=True))
    write_table(out_path, table)
    extra = [c for c in table.columns if c not in ("user", "rank", "item", "score")]
    click.echo(f"top-{k} for {table['user'].nunique():,} users: {len(table):,} rows"
               f"{' with ' + ', '.join(extra) if extra else ''} written to {out_path}")


def _plot_attention(rec, user, path: Path, last: int = 30) -> None:
    """KSR's read attention over relations after each of the user's ``last`` events."""
    import numpy as np

    from ..models.capabilities import AttentionTracer
    from ..plots import relation_attention_plot
    if not isinstance(rec.model_, AttentionTracer):
        raise click.UsageError(f"--plot shows attention over relations (KSR); model "
                               f"{rec.saved_.name!r} has none")
    index = int(rec.saved_.users.to_index([user], what="user")[0])
    query = rec.query(np.array([index]))
    trace = rec.model_.attention_trace(query.history, query.mask).cpu().numpy()[-last:]
    items = rec.saved_.items.to_raw(query.history[0][query.mask[0]].cpu().numpy())[-last:]
    relation_attention_plot(trace, [str(i) for i in items], rec.model_.entry_labels(), path,
                            title=f"user {user}: attention over relations after each event")
    click.echo(f"attention plot written to {path}")


def _recommend_session(rec, clicks: list[str], k: int, explain: bool) -> None:
    ids, scores = rec.recommend_session(clicks, k)
    click.echo("session " + ",".join(clicks))
    if explain:
        # STAMP's attention depends on the session only, so it is the same for every item
        click.echo("  attention per click, strongest first: " + ", ".join(f"{e.id} ({e.weight:.3f})"
                                                       for e in rec.explain_session(clicks)))
    # a copy read says whether each item is a repeat (of which slot) or an exploration
    modes = rec.session_modes(clicks, ids) if explain else [None] * len(ids)
    for rank, (item, score, mode) in enumerate(zip(ids, scores, modes), 1):
        why = "" if mode is None else f"\t{mode.kind} {mode.id} ({mode.weight:.2f})"
        click.echo(f"  {rank:>3}. {item}\t{score:.4f}{why}")


@click.command()
@click.argument("model")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Dataset file or folder (all of it is the stream).")
@click.option("--format", "fmt", default=None, help="Input format (default: auto-detect).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.lr=0.01 (repeatable).")
@click.option("--epochs", type=int, default=None, help="Offline training epochs.")
@click.option("--seed", type=int, default=None)
@click.option("--update", type=click.Choice(["frozen", "retrain", "online"]), default=None,
              help="How each slice updates the model (default: online for stream models, else frozen).")
@click.option("--train-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Offline part of the time-ordered stream.")
@click.option("--slices", type=click.IntRange(min=1), default=5, show_default=True,
              help="Consecutive test slices.")
@click.option("--online-epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write results JSON here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@device_option(help="auto | cpu | cuda | cuda:N | mps (train.device; default auto): where the model "
                    "trains, recommends and learns online.", default=None)
def stream(model, data_path, fmt, config_path, overrides, epochs, seed, update, train_frac, slices,
           online_epochs, out, progress, device):
    """Streaming protocol: train MODEL offline on the first part of the time-ordered data, then
    for each test slice recommend (HR/NDCG, full ranking) and update the model with the slice."""
    from ..data.preprocess import preprocess
    from ..data.readers import load
    from ..devices import resolve_device
    from ..fileio import atomic_write_json, check_output_file
    from ..models import spec
    from ..models.capabilities import StreamLearner
    from ..streaming import StreamConfig, run_stream
    from ..training.config import load_config
    config = load_config(model, config_path, list(overrides), epochs=epochs, seed=seed)
    if device is not None:       # as train's --device: the run's train.device
        config = replace(config, train=replace(config.train, device=device))
    resolve_device(config.train.device)          # a device this machine lacks: before the data
    if update is None:
        update = "online" if issubclass(spec(config.model).cls, StreamLearner) else "frozen"
    stream_cfg = StreamConfig(train_frac=train_frac, n_slices=slices, update=update,
                              online_epochs=online_epochs)
    if out is not None:
        check_output_file(out)
    if not data_path.exists():
        raise DataError(f"{data_path}: no such file or directory")
    d = config.data
    data_ = preprocess(load(data_path, fmt or d.format or None).interactions,
                       threshold=d.threshold or None, user_k=d.user_k, item_k=d.item_k,
                       duplicates=d.duplicates)
    results = run_stream(config, data_, stream_cfg, echo=lambda line: click.echo(line, err=True),
                         progress=sys.stderr.isatty() if progress is None else progress)
    rows = [{"slice": s["slice"], "events": s["events"], "HR@10": s["HR@10"], "NDCG@10": s["NDCG@10"],
             "update s": s["update_seconds"], "events/s": s["update_events_per_s"]}
            for s in results["slices"]]
    m = results["mean"]
    rows.append({"slice": "mean", "events": sum(s["events"] for s in results["slices"]),
                 "HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"], "update s": m["update_seconds"],
                 "events/s": m["update_events_per_s"]})
    click.echo(f"{model} on {data_path} (streaming, update {update}, offline "
               f"{results['offline']['seconds']:.1f}s, best epoch {results['offline']['best_epoch']})")
    click.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if out is not None:
        atomic_write_json(out, results)
        click.echo(f"saved to {out}")
