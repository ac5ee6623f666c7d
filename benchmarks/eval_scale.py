"""Full-ranking evaluation of every user at MovieLens-20M size: now against before, and against
its matmul floor, back to back in one process.

    PYTHONPATH=src:. .venv/bin/python benchmarks/eval_scale.py [--rows 20000000] [--threads 2]
    PYTHONPATH=src:. .venv/bin/python benchmarks/eval_scale.py --model gru4rec --no-before

On the synthetic file of ``benchmarks/scale_ml20m.py`` (20M rows, 140k users, 27k items), with an
untrained BPR-MF (dim 64) and the leave-one-out split:

* ``floor``  — the score products alone: ``score_all`` for every test user, in the evaluator's
  batches (shortest history first, as it evaluates): what no evaluation can skip;
* ``now``    — ``Evaluator(..., protocols=("full",))``, the accuracy metrics (and, in a second
  row, with the beyond-accuracy ones);
* ``before`` — the same evaluation with the previous code patched in (the references of
  ``tests/hot_path_references.py``: per-request log-binomials and catalogue-long prefix tables,
  torch comparisons, a copy of every score batch).

Rows alternate now/before ``--repeats`` times; the median is reported with the load average.
``--model gru4rec`` (dim 64, hidden 128: the ml-100k recipe's sizes, untrained) measures a
sequence model, whose floor and evaluation include encoding every user's history; ``--no-before``
skips the previous code. Writes benchmarks/results/eval_scale[_MODEL].{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT

sys.path.insert(0, str(ROOT))
from scale_ml20m import generate  # noqa: E402

from memrec import evaluation, metrics  # noqa: E402
from memrec.data.readers import load  # noqa: E402
from memrec.data.splits import leave_one_out  # noqa: E402
from memrec.models import build  # noqa: E402
from memrec.models.capabilities import make_query  # noqa: E402
from tests import hot_path_references as before  # noqa: E402


#: the measured models and their sizes
MODELS = {"bprmf": {"dim": 64}, "gru4rec": {"dim": 64, "hidden": 128}}


@contextlib.contextmanager
def previous_code():
    """The evaluation as it was before issue 20's metric work."""
    saved = (dict(metrics._AT_K), metrics._counts_by_comparison, evaluation._writable)
    metrics._AT_K.update(HR=before.reference_hit_rate, NDCG=before.reference_ndcg,
                         MRR=before.reference_mrr, MAP=before.reference_average_precision)
    metrics._counts_by_comparison = before.reference_counts_by_comparison
    evaluation._writable = lambda scores, model: scores.clone()
    try:
        yield
    finally:
        metrics._AT_K.clear()
        metrics._AT_K.update(saved[0])
        metrics._counts_by_comparison, evaluation._writable = saved[1], saved[2]


def score_floor(evaluator, model) -> float:
    t = evaluator.targets
    order = t.users[np.argsort(np.diff(evaluator.history_indptr)[t.users], kind="stable")]   # as evaluated
    start = time.perf_counter()
    with torch.no_grad():
        for begin in range(0, len(order), evaluator.batch_size):
            users = order[begin:begin + evaluator.batch_size]
            model.score_all(make_query(model, users, evaluator.history_indptr, evaluator.history_items))
    return time.perf_counter() - start


def timed(fn) -> tuple[float, float, object]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, load, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=140_000)
    parser.add_argument("--items", type=int, default=27_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="bprmf", choices=sorted(MODELS))
    parser.add_argument("--no-before", action="store_true", help="only the current code")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ratings.csv"
        generate(path, args.rows, args.users, args.items)
        split = leave_one_out(load(str(path)).interactions)
    torch.manual_seed(0)
    model = build(args.model, split.train.n_users, split.train.n_items, MODELS[args.model]).eval()
    accuracy = evaluation.Evaluator(split, "test", protocols=("full",), beyond_accuracy=False)
    catalogue = evaluation.Evaluator(split, "test", protocols=("full",))
    versions = ("now",) if args.no_before else ("now", "before")
    rows: dict[str, list] = {"floor": [], **{v + extra: [] for extra in ("", " + beyond accuracy")
                                             for v in versions}}
    results = {}
    for _ in range(args.repeats):
        rows["floor"].append(timed(lambda: score_floor(accuracy, model))[:2])
        for name, evaluator in (("", accuracy), (" + beyond accuracy", catalogue)):
            seconds, busy, results["now" + name] = timed(lambda: evaluator.evaluate(model))
            rows["now" + name].append((seconds, busy))
            if args.no_before:
                continue
            with previous_code():
                seconds, busy, results["before" + name] = timed(lambda: evaluator.evaluate(model))
            rows["before" + name].append((seconds, busy))
    for name in ("", " + beyond accuracy") if not args.no_before else ():   # the rewrite changes no metric
        now, old = results["now" + name]["full"], results["before" + name]["full"]
        assert all(abs(now[k] - old[k]) < 1e-9 for k in now), name
    median = {name: statistics.median(s for s, _ in values) for name, values in rows.items()}
    loads = {name: (min(l for _, l in values), max(l for _, l in values)) for name, values in rows.items()}
    record = {"model": args.model, "params": MODELS[args.model], "rows": args.rows, "users": int(len(accuracy.targets.users)), "items": split.train.n_items,
              "threads": args.threads, "repeats": args.repeats, "median_seconds": median,
              "load_average_range": loads, "all": rows, "torch": torch.__version__,
              "platform": platform.platform()}
    out = ROOT / "benchmarks" / "results"
    stem = "eval_scale" if args.model == "bprmf" else f"eval_scale_{args.model}"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    lines = ["# Full-ranking evaluation of every user at MovieLens-20M size", "",
             f"{args.rows:,} synthetic rows, {record['users']:,} test users × {split.train.n_items:,} items, "
             f"{args.model} {MODELS[args.model]} (untrained), {args.threads} threads, median of {args.repeats} alternating runs in one process.", "",
             "| measurement | seconds | × floor | load avg (min–max) |", "|---|---|---|---|"]
    for name, seconds in median.items():
        low, high = loads[name]
        lines.append(f"| {name} | {seconds:.1f} | {seconds / median['floor']:.2f} | {low:.2f}–{high:.2f} |")
    if not args.no_before:
        lines += ["", f"now vs before: {median['before'] / median['now']:.2f}× (accuracy metrics), "
                  f"{median['before + beyond accuracy'] / median['now + beyond accuracy']:.2f}× (with beyond "
                  "accuracy); the metrics are equal to 1e-9."]
    lines += ["", f"torch {torch.__version__}, {platform.platform()}."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
