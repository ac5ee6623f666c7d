"""Scale targets on a generated MovieLens-20M-sized file: loading, splitting, full-ranking evaluation.

A synthetic ``user,item,rating,timestamp`` CSV (header, 20M rows, 140k users, 27k items by
default) is written to a temporary folder and deleted at the end. Users get at least 20 ratings
and a heavy-tailed activity; items are drawn with a Zipf-like popularity (p ∝ 1/(rank + 30)),
raw item ids are sparse like MovieLens' movieIds, (user, item) pairs are unique, rows are sorted
by user like ``ratings.csv``.

Each measurement runs in its own child process (``--child``) so its peak RSS (``VmHWM``) is its
own:

* ``load``  — :func:`memrec.data.readers.load`: reading and indexing. Targets < 60 s, < 3 GB.
* ``eval``  — :func:`leave_one_out` (timed), ``Evaluator(split, "test", protocols=("full",))``
  (timed), ``.evaluate(model)`` of an untrained BPR-MF (dim 64) for all users. Target < 60 s.
* ``negatives`` — :func:`make_split` loo with 100 sampled negatives (what ``memrec train``
  does), for reference.
* ``profile`` — only when ``eval`` misses its target (or with ``--profile``): a cProfile of
  ``evaluate`` on the first ``--profile-users`` test users.

    PYTHONPATH=src .venv/bin/python benchmarks/scale_ml20m.py               # 20M rows
    PYTHONPATH=src .venv/bin/python benchmarks/scale_ml20m.py --rows 2000000  # quick check

Writes ``benchmarks/results/scale_ml20m{,_<rows>}.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"load_seconds": 60.0, "load_peak_rss_mb": 3 * 1024.0, "evaluate_seconds": 60.0}


# -- data -------------------------------------------------------------------------------------
def generate(path: Path, n_rows: int, n_users: int, n_items: int, seed: int = 0) -> dict:
    """Write the synthetic ratings CSV; returns its actual sizes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    min_per_user = min(20, n_rows // n_users)
    activity = rng.pareto(1.5, n_users) + 1.0                       # heavy-tailed users
    popularity = 1.0 / (np.arange(n_items) + 30.0)                      # Zipf-like items

    def draw(users: np.ndarray) -> np.ndarray:
        items = rng.choice(n_items, len(users), p=popularity / popularity.sum())
        return users.astype(np.int64) * n_items + items

    def unique(keys: np.ndarray) -> np.ndarray:                         # np.unique is far slower
        keys = np.sort(keys)
        return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]

    keys = unique(draw(np.repeat(np.arange(n_users), min_per_user)))
    while len(keys) < n_rows:                                           # top up past duplicates
        more = int((n_rows - len(keys)) * 1.2) + 1000
        keys = unique(np.concatenate([keys, draw(rng.choice(n_users, more, p=activity / activity.sum()))]))
    keys = np.delete(keys, rng.choice(len(keys), len(keys) - n_rows, replace=False))  # sorted by user
    user, item = keys // n_items, keys % n_items
    item_ids = np.sort(rng.choice(np.arange(1, 131_263), n_items, replace=False))
    table = pa.table({
        "user": user + 1,
        "item": item_ids[rng.permutation(n_items)][item],               # popularity ≠ id order
        "rating": rng.integers(1, 11, len(keys)) / 2.0,
        "timestamp": rng.integers(789_652_009, 1_427_784_002, len(keys)),
    })
    with open(path, "wb") as fh:
        fh.write(b"user,item,rating,timestamp\n")
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False))
    return {"rows": len(keys), "users": int(np.count_nonzero(np.bincount(user))),
            "items": int(np.count_nonzero(np.bincount(item))),
            "bytes": path.stat().st_size}


# -- children ---------------------------------------------------------------------------------
def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def child_imports(path: str) -> dict:
    import memrec.evaluation  # noqa: F401
    import memrec.data.readers  # noqa: F401
    return {"peak_rss_mb": peak_rss_mb()}


def child_load(path: str) -> dict:
    from memrec.data.readers import load
    dataset, seconds = _timed(load, path)
    data = dataset.interactions
    return {"load_seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rows": len(data),
            "users": data.n_users, "items": data.n_items}


def _split_and_evaluator(path: str):
    from memrec.data.readers import load
    from memrec.data.splits import leave_one_out
    from memrec.evaluation import Evaluator
    data = load(path).interactions
    split, split_s = _timed(leave_one_out, data)
    del data
    evaluator, init_s = _timed(Evaluator, split, "test", protocols=("full",))
    return split, evaluator, split_s, init_s


def _model(split, dim: int):
    import torch
    from memrec.models import build
    torch.manual_seed(0)
    return build("bprmf", split.train.n_users, split.train.n_items, {"dim": dim})


def child_eval(path: str, dim: int = 64) -> dict:
    import torch
    split, evaluator, split_s, init_s = _split_and_evaluator(path)
    metrics, eval_s = _timed(evaluator.evaluate, _model(split, dim))
    full = metrics["full"]
    return {"split_seconds": split_s, "evaluator_init_seconds": init_s, "evaluate_seconds": eval_s,
            "evaluated_users": int(len(evaluator.targets.users)), "batch_size": evaluator.batch_size,
            "n_items": split.train.n_items, "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": peak_rss_mb(), "metrics": {k: full[k] for k in ("HR@10", "NDCG@10", "MRR@10")}}


def child_negatives(path: str) -> dict:
    from memrec.data.readers import load
    from memrec.data.splits import make_split
    data = load(path).interactions
    _, seconds = _timed(make_split, data, "loo", n_negatives=100)
    return {"make_split_loo_100neg_seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def child_profile(path: str, users: int = 20480, dim: int = 64) -> dict:
    """cProfile of ``evaluate`` on the first ``users`` test users (a sub-split built with the
    public API, so the profile follows whatever the evaluation code currently does)."""
    import cProfile
    import dataclasses
    import io
    import pstats

    import numpy as np
    from memrec.data.readers import load
    from memrec.data.splits import leave_one_out
    from memrec.evaluation import Evaluator

    split = leave_one_out(load(path).interactions)
    chosen = np.unique(split.test.user)[:users]
    split = dataclasses.replace(split, test=split.test.take(np.isin(split.test.user, chosen)))
    evaluator = Evaluator(split, "test", protocols=("full",))
    model = _model(split, dim)
    profiler = cProfile.Profile()
    profiler.enable()
    _, total = _timed(evaluator.evaluate, model)
    profiler.disable()
    stats = pstats.Stats(profiler)
    memrec_calls = sorted(((cum, name, f"{Path(file).parent.name}/{Path(file).name}:{line}")
                           for (file, line, name), (_, _, _, cum, _) in stats.stats.items()
                           if "memrec" in file), reverse=True)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    return {"profiled_users": int(len(chosen)), "evaluate_seconds_profiled": total,
            "memrec_cumulative_seconds": [[where, name, cum] for cum, name, where in memrec_calls[:12]],
            "cprofile_top": text.getvalue()}


def code_version() -> dict:
    """sha256 prefixes of the measured modules: the code is in flux, this says which was run."""
    import hashlib
    files = ("evaluation.py", "metrics.py", "data/splits.py", "data/negatives.py",
             "data/readers/delimited.py")
    return {f: hashlib.sha256((ROOT / "src" / "memrec" / f).read_bytes()).hexdigest()[:12] for f in files}


CHILDREN = {"imports": child_imports, "load": child_load, "eval": child_eval,
            "negatives": child_negatives, "profile": child_profile}


def spawn(kind: str, path: Path, threads: int | None = None, **kwargs) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:  # cap torch/OpenMP/MKL threads in the child
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    spec = json.dumps({"kind": kind, "path": str(path), **kwargs})
    load_before = os.getloadavg()[0]  # the machine may be shared: record how busy it was
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", spec], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = time.perf_counter() - start
    result["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    print(f"{kind}: {json.dumps({k: v for k, v in result.items() if k != 'cprofile_top'})}",
          file=sys.stderr, flush=True)
    return result


# -- report -----------------------------------------------------------------------------------
def verdict(value: float, target: float) -> str:
    return f"{'PASS' if value < target else 'MISS'} (< {target:g})"


def markdown(r: dict) -> str:
    g, m, ld, e = r["generated"], r["machine"], r["load"], r["eval"]
    lines = [f"# Scale check: generated MovieLens-20M-sized data ({g['rows']:,} rows)", "",
             f"{g['rows']:,} rows, {g['users']:,} users, {g['items']:,} items, "
             f"{g['bytes'] / 2**20:,.0f} MiB CSV (generated in {r['generate_seconds']:.1f} s).", "",
             "| measurement | value | target |", "|---|---|---|",
             f"| `load(path)` wall seconds | {ld['load_seconds']:.1f} | {verdict(ld['load_seconds'], TARGETS['load_seconds'])} |",
             f"| `load(path)` peak RSS MB | {ld['peak_rss_mb']:,.0f} | {verdict(ld['peak_rss_mb'], TARGETS['load_peak_rss_mb'])} |",
             f"| `leave_one_out` seconds | {e['split_seconds']:.1f} | |",
             f"| `Evaluator(split, 'test', ('full',))` seconds | {e['evaluator_init_seconds']:.1f} | |",
             f"| `.evaluate(bprmf dim 64)` seconds, {e['evaluated_users']:,} users × {e['n_items']:,} items | "
             f"{e['evaluate_seconds']:.1f} | {verdict(e['evaluate_seconds'], TARGETS['evaluate_seconds'])} |",
             f"| eval child peak RSS MB (load + split + evaluator + model) | {e['peak_rss_mb']:,.0f} | |"]
    if "negatives" in r:
        n = r["negatives"]
        lines.append(f"| `make_split('loo', n_negatives=100)` seconds (reference) | "
                     f"{n['make_split_loo_100neg_seconds']:.1f} | |")
    lines += ["", f"Peak RSS of a child that only imports memrec + torch: {r['imports']['peak_rss_mb']:.0f} MB "
              "(included in every figure above).", "",
              f"Machine: {m['nproc']} CPUs (nproc), torch {m['torch']} with {e['torch_threads']} thread(s), "
              f"Python {m['python']}, {m['platform']}; run {r['date']}. 1-min load average before/after "
              "each child: " + ", ".join(f"{k} {r[k]['loadavg_1min'][0]:.1f}/{r[k]['loadavg_1min'][1]:.1f}"
                                       for k in ("load", "eval", "negatives", "profile") if k in r)
              + " (≈1–2 = the benchmark alone on 2 cores; more = a shared, busier machine). "
              f"Command: `{r['command']}`."]
    if "profile" in r:
        p = r["profile"]
        lines += ["", f"## Profile of full-ranking evaluation (first {p['profiled_users']:,} users, "
                  f"{p['evaluate_seconds_profiled']:.1f} s under cProfile)", "",
                  "Cumulative seconds of memrec functions:", "",
                  "| function | where | cumulative s |", "|---|---|---|"]
        lines += [f"| `{name}` | {where} | {cum:.2f} |" for where, name, cum in p["memrec_cumulative_seconds"]]
        lines += ["", "Top functions by own time:"]
        lines += ["", "```", p["cprofile_top"].strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=140_000)
    parser.add_argument("--items", type=int, default=27_000)
    parser.add_argument("--profile", action="store_true", help="profile even if eval meets its target")
    parser.add_argument("--profile-users", type=int, default=20480)
    parser.add_argument("--no-negatives", action="store_true", help="skip the make_split reference")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads per child (default: torch's default, one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        kind, path = spec.pop("kind"), spec.pop("path")
        print(json.dumps(CHILDREN[kind](path, **spec)))
        return

    import torch
    report = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": " ".join(["benchmarks/scale_ml20m.py", *sys.argv[1:]]),
              "machine": {"nproc": os.cpu_count(), "torch": torch.__version__,
                          "python": platform.python_version(), "platform": platform.platform()},
              "targets": TARGETS, "code_sha256": code_version()}
    with tempfile.TemporaryDirectory(prefix="memrec-scale-") as tmp:
        path = Path(tmp) / "ratings_synthetic.csv"
        report["generated"], report["generate_seconds"] = _timed(
            generate, path, args.rows, args.users, args.items)
        print(f"generated: {report['generated']}", file=sys.stderr, flush=True)
        report["imports"] = spawn("imports", path, args.threads)
        report["load"] = spawn("load", path, args.threads)
        report["eval"] = spawn("eval", path, args.threads)
        if not args.no_negatives:
            report["negatives"] = spawn("negatives", path, args.threads)
        if args.profile or report["eval"]["evaluate_seconds"] >= TARGETS["evaluate_seconds"]:
            report["profile"] = spawn("profile", path, args.threads, users=args.profile_users)
    suffix = "" if args.rows == 20_000_000 else f"_{args.rows}"
    suffix += f"_threads{args.threads}" if args.threads else ""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scale_ml20m{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"scale_ml20m{suffix}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
