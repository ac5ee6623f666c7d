"""The ``data`` group: ``info``, ``sessions``, ``synth``, ``fetch``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pandas as pd

from ..data.fetch import SOURCES
from ..training.config import DataConfig
from ..errors import DataError


# -- data -----------------------------------------------------------------------------------
@click.group()
def data():
    """Inspect, generate and download datasets."""


#: timestamps shown as dates: unix seconds from 1973 to 2286
SECONDS_RANGE = (1e8, 1e10)


@data.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default=None)
def data_info(path, fmt):
    """Users, items, interactions, density, time span, degree quantiles."""
    from ..data.readers import detect_format, load
    dataset = load(path, fmt)
    info = dataset.interactions.describe()
    click.echo(f"dataset       {dataset.name}")
    if fmt is None and Path(path).is_dir():     # a folder may hold several formats: say which
        detected, target = detect_format(Path(path))
        click.echo(f"read          {target} ({detected})")
    for key in ("users", "items", "interactions"):
        click.echo(f"{key:<13} {info[key]:,}")
    click.echo(f"density       {info['density']:.6f}  (distinct user-item pairs)")
    if info["repeated_pairs"]:
        click.echo(f"repeats       {info['repeated_pairs']:,} interactions repeat a user-item pair; "
                   f"training keeps them unless --set data.duplicates=first|last|error "
                   f"(default: {DataConfig().duplicates})")
    if "time_span" in info:
        first, last = info["time_span"]
        # dates only for values that look like unix seconds (1973..2286): positions and
        # milliseconds would print as 1970-01-01 or fail
        dated = all(SECONDS_RANGE[0] <= t <= SECONDS_RANGE[1] for t in (first, last))
        lo, hi = (pd.to_datetime(t, unit="s") if dated else None for t in (first, last))
        click.echo(f"time span     {first:.0f} .. {last:.0f}"
                   + (f"  ({lo:%Y-%m-%d} .. {hi:%Y-%m-%d})" if dated else "  (not unix seconds: no dates)"))
    if "sessions" in info:
        click.echo(f"sessions      {info['sessions']:,}")
    for side in ("user", "item"):
        q = info[f"{side}_degree_quantiles"]
        click.echo(f"{side} degree   " + "  ".join(f"q{float(p):g}={v:g}" for p, v in q.items()))
    if dataset.given_split is not None:
        click.echo(f"given split   {dataset.given_split.kind}")
    _echo_repeat_shares(dataset)
    for name, frame in dataset.extras.items():
        click.echo(f"extra         {name}: {len(frame):,} rows")
    for note in dataset.notes:
        click.echo(f"note          {note}")


def _echo_repeat_shares(dataset) -> None:
    """The share of held-out targets already in the user's or session's history, per split: the
    dataset's own split if it ships one, else each split memrec makes with the default options."""
    from ..data.repeats import repeat_shares
    from ..data.splits import make_split
    click.echo("repeat share  held-out targets already in the user's or session's history")
    if dataset.given_split is not None:
        splits = {"given": lambda: dataset.given_split}
    else:
        cfg, data = DataConfig(), dataset.interactions
        kinds = ["loo", "temporal", "random"] + (["session"] if data.session is not None else [])
        options = {"loo": {}, "temporal": {"test_frac": cfg.test_frac, "valid_frac": cfg.valid_frac},
                   "random": {"test_frac": cfg.test_frac, "valid_frac": cfg.valid_frac},
                   "session": {"test_frac": cfg.test_frac, "valid_frac": cfg.valid_frac}}
        splits = {kind: (lambda kind=kind: make_split(data, kind, seed=cfg.seed, n_negatives=0,
                                                      **options[kind])) for kind in kinds}
    for kind, make in splits.items():
        try:
            shares = repeat_shares(make())
        except DataError as e:                  # a split this data cannot make: say why
            click.echo(f"  {kind:<11} n/a ({e})")
            continue
        click.echo(f"  {kind:<11} " + " · ".join(f"{part} {s.share:.1%} of {s.total:,}"
                                                for part, s in shares.items()))


@data.command("sessions")
@click.argument("raw", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["yoochoose", "diginetica"]), required=True,
              help="yoochoose: yoochoose-clicks.dat; diginetica: train-item-views.csv.")
@click.option("--test-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Days of test sessions (default: 1 for yoochoose, 7 for diginetica).")
@click.option("--fraction", type=click.IntRange(min=1), default=None,
              help="Keep the most recent 1/N of training prefixes (yoochoose 1/64: 64).")
@click.option("--min-item-count", type=click.IntRange(min=1), default=5, show_default=True)
def data_sessions(raw, out, fmt, test_days, fraction, min_item_count):
    """Preprocess a raw click log into SR-GNN/STAMP session files (train sessions, test pairs)."""
    from ..data.session_prep import preprocess_sessions, read_raw_clicks
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} already exists and is not empty; choose another folder")
    days = test_days if test_days is not None else (1.0 if fmt == "yoochoose" else 7.0)
    result = preprocess_sessions(read_raw_clicks(raw, fmt), test_days=days,
                                 min_item_count=min_item_count, fraction=fraction)
    result.write(out)
    n_clicks = sum(map(len, result.train))
    click.echo(f"{len(result.train):,} training sessions ({n_clicks:,} clicks, "
               f"{n_clicks - len(result.train):,} training prefixes), {len(result.test_targets):,} "
               f"test pairs, {result.n_items:,} items -> {out}")


@data.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--users", type=click.IntRange(min=1), default=None)
@click.option("--items", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(out, users, items, seed):
    """Write the synthetic planted-structure dataset (the embedded default) as CSV."""
    from dataclasses import replace

    from ..data.synthetic import SynthConfig, generate, write_csv
    config = SynthConfig(seed=seed)
    if users:
        config = replace(config, n_users=users)
    if items:
        config = replace(config, n_items=items)
    data_ = generate(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(data_, out)
    click.echo(f"wrote {len(data_):,} interactions ({data_.n_users} users, {data_.n_items} items) to {out}")


@data.command("fetch", help="Download the public dataset NAME, verify its checksum, extract it. "
                             "NAME: " + ", ".join(sorted(SOURCES)) + ".")
@click.argument("name")
@click.option("--dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to download into (created if absent).")
@click.option("--url", default=None, help="Download from this address instead (a mirror).")
def data_fetch(name, dest, url):
    """Download a public dataset, verify its checksum, extract it."""
    from ..data.fetch import fetch
    path = fetch(name, dest, url=url, progress=sys.stderr.isatty())
    click.echo(f"{name} ready in {path}")
