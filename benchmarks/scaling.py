"""Cost curves: training-epoch time, full-evaluation time and peak memory as the catalogue grows
and as histories grow, for the sequence and memory models; a log-log plot and the fitted exponent.

    PYTHONPATH=src .venv/bin/python benchmarks/scaling.py run [--models stamp,gru4rec] [--axis items]
    PYTHONPATH=src .venv/bin/python benchmarks/scaling.py fix      # sampled softmax at 1M items
    PYTHONPATH=src .venv/bin/python benchmarks/scaling.py report   # table + docs/scaling.png only

Synthetic data with a planted structure (``memrec.data.synthetic``: interest clusters, planted
successor items, Zipf popularity), leave-one-out, every model untuned at d = 64:

* ``items``  axis: 1,000 users × ~20 events, catalogue 10k, 100k, 1M items;
* ``length`` axis: 500 users × 50, 200, 1,000 events each (min = mean length), 10k items.

Each point runs in its own process (its peak RSS is the process's high-water mark, data and
model included) with one thread, one training epoch and a full-ranking evaluation of every test
user; a point that does not finish in ``--limit`` seconds is recorded as such — that is where a
curve bends. The exponent is the least-squares slope of log(seconds) on log(size) over the
finished points.

``fix``: at 1M items the full softmax is what grows. The remedy in the trainer's vocabulary is
``train.loss = "sampled_softmax"`` (128 negatives from the popularity^0.75 sampler, log-q
corrected): its epoch time at 1M items, and its accuracy against the full softmax where both can
learn something in minutes (3,000 users × 20 events, 50k items, 3 epochs, 2 seeds; full-ranking
HR@10 / NDCG@10 of the test item).

Results: benchmarks/results/scaling.{json,md}; the plot: docs/scaling.png. Saves after every
point and skips the points already recorded (delete the json to re-measure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import ROOT

RESULTS = ROOT / "benchmarks" / "results"
RECORD = RESULTS / "scaling.json"
PLOT = ROOT / "docs" / "scaling.png"

MODELS = {"stamp": {"dim": 64}, "gru4rec": {"dim": 64, "hidden": 64},
          "sasrec": {"dim": 64, "max_len": 200}, "rumf": {"dim": 64}, "cmn": {"dim": 64, "hops": 2}}
AXES = {"items": {"sizes": [10_000, 100_000, 1_000_000], "users": 1_000, "length": 20, "items": None},
        "length": {"sizes": [50, 200, 1_000], "users": 500, "length": None, "items": 10_000}}
TRAIN = {"epochs": 1, "patience": 0, "eval_batch_size": 128}


def data(n_users: int, n_items: int, length: int, seed: int = 0):
    from memrec.data.splits import leave_one_out
    from memrec.data.synthetic import SynthConfig, generate
    config = SynthConfig(n_users=n_users, n_items=n_items, n_clusters=max(20, n_items // 500),
                         mean_length=length, min_length=length, seed=seed)
    return leave_one_out(generate(config))


def point(model: str, n_users: int, n_items: int, length: int, train: dict, seed: int = 0) -> dict:
    """One measurement, in this process: train one model, evaluate it, report seconds and RSS."""
    import torch

    from memrec.evaluation import Evaluator
    from memrec.recommender import Recommender
    torch.set_num_threads(1)
    split = data(n_users, n_items, length)
    params = dict(MODELS[model])
    if "max_len" in params:
        params["max_len"] = min(params["max_len"], length)
    rec = Recommender(model, train={**TRAIN, "seed": seed, **train}, **params)
    start = time.perf_counter()
    rec.fit_split(split, progress=False, echo=lambda line: None)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = Evaluator(split, "test", protocols=("full",), beyond_accuracy=False).evaluate(rec.model_)
    eval_seconds = time.perf_counter() - start
    return {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "events": int(len(split.train)), "test_users": int(len(np.unique(split.test.user))),
            "n_items": int(split.train.n_items), "full": metrics["full"],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(key: str, model: str, n_users: int, n_items: int, length: int, limit: float,
            train: dict | None = None, seed: int = 0) -> dict:
    """:func:`point` in a child process under a time limit; the load average beside it."""
    args = json.dumps([model, n_users, n_items, length, train or {}, seed])
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "point", args], capture_output=True, text=True,
                              timeout=limit, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return {"key": key, "timed_out": limit, "load_average": load}
    if done.returncode != 0:
        raise SystemExit(f"{key} failed:\n{done.stderr[-2000:]}")
    return {"key": key, **json.loads(done.stdout.splitlines()[-1]), "wall": time.perf_counter() - start,
            "load_average": load}


def load_record() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.is_file() else {"points": {}, "fix": {}}


def save(record: dict) -> None:
    from memrec.fileio import atomic_write_json
    atomic_write_json(RECORD, record)


def run(args) -> None:
    record = load_record()
    for axis in args.axis.split(","):
        spec = AXES[axis]
        for model in args.models.split(","):
            for size in spec["sizes"]:
                key = f"{axis}/{model}/{size}"
                earlier = record["points"].get(key)
                if earlier and not earlier.get("timed_out"):
                    continue
                if _bent_before(record, axis, model, size):
                    continue                       # a smaller size already ran out of time
                n_items = size if axis == "items" else spec["items"]
                length = size if axis == "length" else spec["length"]
                result = measure(key, model, spec["users"], n_items, length, args.limit)
                record["points"][key] = result
                save(record)
                print(_line(result), flush=True)
    report()


def _bent_before(record: dict, axis: str, model: str, size: int) -> bool:
    return any(record["points"].get(f"{axis}/{model}/{smaller}", {}).get("timed_out")
               for smaller in AXES[axis]["sizes"] if smaller < size)


def _line(result: dict) -> str:
    if result.get("timed_out"):
        return f"{result['key']}: > {result['timed_out']:.0f} s (load {result['load_average']:.2f})"
    return (f"{result['key']}: train {result['train_seconds']:.1f} s, eval {result['eval_seconds']:.1f} s, "
            f"peak {result['peak_mb']:.0f} MB, {result['events']:,} events (load {result['load_average']:.2f})")


SAMPLED = {"loss": "sampled_softmax", "n_negatives": 128, "sampler": "popularity", "sampler_alpha": 0.75}
FIX_DATA = {"users": 3_000, "items": 50_000, "length": 20}


def fix(args) -> None:
    """Sampled softmax: its epoch time at the largest catalogue, and its accuracy cost."""
    record = load_record()
    spec, largest = AXES["items"], AXES["items"]["sizes"][-1]
    for model in args.models.split(","):
        runs = {f"fix/{model}/sampled_softmax/time": (spec["users"], largest, spec["length"], SAMPLED, 0)}
        for seed in args.seeds:
            for loss, train in (("softmax", {"loss": "softmax"}), ("sampled_softmax", SAMPLED)):
                runs[f"fix/{model}/{loss}/{seed}"] = (FIX_DATA["users"], FIX_DATA["items"], FIX_DATA["length"],
                                                      {**train, "epochs": 3}, seed)
        for key, (users, items, length, train, seed) in runs.items():
            if key in record["fix"]:
                continue
            record["fix"][key] = measure(key, model, users, items, length, args.limit, train, seed)
            save(record)
            print(_line(record["fix"][key]), flush=True)
    report()


def exponent(sizes: list[float], seconds: list[float]) -> float:
    """The slope of log(seconds) on log(size) (least squares)."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def report() -> None:
    record = load_record()
    lines = ["# Cost curves (issue 20)", "",
             "`benchmarks/scaling.py` (its docstring says how each point is made): one process per point, one "
             "thread, one training epoch + full-ranking evaluation of every test user, d = 64, untuned; "
             "peak MB is the process's RSS high-water mark. Exponent: slope of log(seconds) on log(size).", ""]
    for axis, spec in AXES.items():
        what = "catalogue size (items)" if axis == "items" else "events per user"
        lines += [f"## As the {what} grows", "",
                  f"{spec['users']:,} users" + (f", {spec['length']} events each" if spec["length"] else
                                                f", {spec['items']:,} items"), "",
                  "| model | " + " | ".join(f"{s:,}: train s / eval s / MB" for s in spec["sizes"])
                  + " | exponent train | exponent eval | load |",
                  "|---|" + "---|" * (len(spec["sizes"]) + 3)]
        for model in MODELS:
            points = [record["points"].get(f"{axis}/{model}/{s}") for s in spec["sizes"]]
            if not any(points):
                continue
            cells, done = [], [(s, p) for s, p in zip(spec["sizes"], points) if p and not p.get("timed_out")]
            for p in points:
                if p is None:
                    cells.append("–")
                elif p.get("timed_out"):
                    cells.append(f"> {p['timed_out']:.0f} s")
                else:
                    cells.append(f"{p['train_seconds']:.1f} / {p['eval_seconds']:.1f} / {p['peak_mb']:.0f}")
            slopes = ([f"{exponent([s for s, _ in done], [p[k] for _, p in done]):.2f}"
                       for k in ("train_seconds", "eval_seconds")] if len(done) >= 2 else ["–", "–"])
            loads = [p["load_average"] for p in points if p]
            lines.append(f"| {model} | " + " | ".join(cells + slopes)
                         + f" | {min(loads):.2f}–{max(loads):.2f} |")
        lines.append("")
    if record["fix"]:
        lines += _fix_table(record["fix"])
    (RESULTS / "scaling.md").write_text("\n".join(lines))
    plot(record)
    print("\n".join(lines))


def _fix_table(runs: dict) -> list[str]:
    lines = ["## The remedy: sampled softmax (128 popularity^0.75 negatives, log-q corrected)", ""]
    timed = {k.split("/")[1]: p for k, p in runs.items() if k.endswith("/time")}
    for model, p in timed.items():
        full = load_record()["points"].get(f"items/{model}/{AXES['items']['sizes'][-1]}", {})
        lines.append(f"- {model} at {AXES['items']['sizes'][-1]:,} items, one epoch: sampled softmax "
                     + (f"> {p['timed_out']:.0f} s" if p.get("timed_out") else f"{p['train_seconds']:.1f} s")
                     + " vs full softmax " + (f"{full['train_seconds']:.1f} s" if "train_seconds" in full else "–")
                     + f" (load {p['load_average']:.2f})")
    lines += ["", f"Accuracy cost: {FIX_DATA['users']:,} users × {FIX_DATA['length']} events, "
              f"{FIX_DATA['items']:,} items, 3 epochs, mean ± std over seeds:", "",
              "| model | loss | seeds | train s | full HR@10 | full NDCG@10 | peak MB | load |",
              "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list] = {}
    for key, p in runs.items():
        _, model, loss, seed = key.split("/")
        if seed != "time":
            groups.setdefault((model, loss), []).append(p)
    for (model, loss), ps in groups.items():
        done = [p for p in ps if not p.get("timed_out")]
        if not done:
            lines.append(f"| {model} | {loss} | 0 of {len(ps)} | > {ps[0]['timed_out']:.0f} | | | | |")
            continue
        def stat(f, digits=4):
            values = [f(p) for p in done]
            return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"
        loads = [p["load_average"] for p in done]
        lines.append(f"| {model} | {loss} | {len(done)} | {stat(lambda p: p['train_seconds'], 0)} | "
                     f"{stat(lambda p: p['full']['HR@10'])} | {stat(lambda p: p['full']['NDCG@10'])} | "
                     f"{np.mean([p['peak_mb'] for p in done]):.0f} | {min(loads):.2f}–{max(loads):.2f} |")
    return lines + [""]


def plot(record: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    for panel, (axis, spec) in zip(panels, AXES.items()):
        for model in MODELS:
            done = [(s, record["points"][f"{axis}/{model}/{s}"]) for s in spec["sizes"]
                    if not record["points"].get(f"{axis}/{model}/{s}", {"timed_out": 1}).get("timed_out")]
            if done:
                line, = panel.plot([s for s, _ in done], [p["train_seconds"] for _, p in done], "o-", label=model)
                panel.plot([s for s, _ in done], [p["eval_seconds"] for _, p in done], "x--",
                           color=line.get_color(), alpha=0.6)
                over = [(s, record["points"][f"{axis}/{model}/{s}"]["timed_out"]) for s in spec["sizes"]
                        if record["points"].get(f"{axis}/{model}/{s}", {}).get("timed_out")]
                if over:          # ran out of time: drawn at the limit, pointing up
                    panel.plot([s for s, _ in over], [t for _, t in over], "^", color=line.get_color())
        panel.set_xscale("log")
        panel.set_yscale("log")
        panel.set_xlabel("items in the catalogue" if axis == "items" else "events per user")
        panel.set_ylabel("seconds")
        panel.grid(True, which="both", alpha=0.3)
        panel.legend(fontsize=8)
    figure.suptitle("one training epoch (solid) and a full evaluation (dashed), 1 thread; "
                    "▲ = did not finish within the time limit", fontsize=10)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "point":
        model, n_users, n_items, length, train, seed = json.loads(sys.argv[2])
        print(json.dumps(point(model, n_users, n_items, length, train, seed)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["run", "fix", "report"])
    parser.add_argument("--models", default=None, help="default: all five (run), stamp (fix)")
    parser.add_argument("--axis", default="items,length")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds one point may take")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    args = parser.parse_args()
    args.models = args.models or (",".join(MODELS) if args.mode == "run" else "stamp")
    if args.mode == "report":
        report()
    elif args.mode == "fix":
        fix(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
