"""Purchase DMN (reconstruction): next-purchase prediction on typed synthetic sessions, and
untyped next-item prediction on Yoochoose 1/64 beside STAMP.

Sections (each writes its part of the results file as soon as it ends):

* ``synthetic`` — :func:`memrec.data.typed_sessions.generate_typed_sessions` (views, carts,
  purchases; carting a trigger item plants its partner as the purchase), temporal split of whole
  sessions (latest 20% test), memory = the events before a test session's first purchase,
  Precision@K / Recall@K over the items it bought (:mod:`memrec.purchases`). Rows: purchase
  popularity, DMN with 1/2/3 hops, DMN without event-type embeddings; ``--seeds`` training seeds
  (the data seed is fixed). The planted ceiling is reported too: the share of test cases whose
  purchase was decided by a carted trigger (``signal cases``) and DMN's top-1 on those.
* ``yoochoose`` — ``configs/dmn_yoochoose1_64.toml`` through :func:`memrec.runs.train_run` (what
  ``memrec train`` does), **bounded**: ``--epochs`` (default 3) with epoch selection on the
  validation sessions and no refit; the test protocol is the session protocol STAMP's numbers in
  ``benchmarks/results/stamp_sessions.json`` use (same 55,898 test pairs, all items ranked).

    PYTHONPATH=src .venv/bin/python benchmarks/dmn_sessions.py synthetic yoochoose --seeds 3

Writes ``benchmarks/results/dmn_sessions.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common import fmt, mean_std, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
KS = (1, 5, 10, 20)
SYNTH = {"n_sessions": 10000, "n_items": 500, "n_triggers": 50, "seed": 0}
DMN_SYNTH = {"dim": 64, "event_types": 3, "target": "purchase"}
VARIANTS = {"DMN, 1 hop": {"hops": 1}, "DMN, 2 hops": {"hops": 2}, "DMN, 3 hops": {"hops": 3},
            "DMN, 2 hops, no event types": {"hops": 2, "type_embeddings": False}}


def section_synthetic(seeds: int, epochs: int) -> dict:
    import numpy as np
    import torch
    from memrec.data.splits import Split
    from memrec.data.typed_sessions import PURCHASE, TypedSessionConfig, generate_typed_sessions
    from memrec.models import build
    from memrec.models.base import Query
    from memrec.purchases import evaluate_purchases, purchase_cases, split_sessions_by_time
    from memrec.training.config import TrainConfig
    from memrec.training.trainer import Trainer
    torch.set_num_threads(1)
    data, truth = generate_typed_sessions(TypedSessionConfig(**SYNTH))
    train, test = split_sessions_by_time(data, 0.2)
    cases = purchase_cases(test)
    decided = truth.deciding_trigger[cases.sessions]
    signal = np.flatnonzero(decided >= 0)
    out = {"data": {**SYNTH, "events": len(data), "train_events": len(train),
                    "test_cases": len(cases), "signal_cases": len(signal)}, "rows": {}}
    pop = build("pop", 1, data.n_items)
    pop.fit_closed_form(train.take(np.flatnonzero(train.rating == PURCHASE)))
    out["rows"]["purchase popularity"] = [{"metrics": evaluate_purchases(pop, cases, KS),
                                           "train_seconds": 0.0}]
    split = Split(kind="given", train=train, valid=None, test=test.take(np.arange(0)))
    for name, options in VARIANTS.items():
        runs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = build("dmn", 1, data.n_items, {**DMN_SYNTH, **options})
            config = TrainConfig(epochs=epochs, lr=5e-3, batch_size=256, loss="softmax",
                                 patience=0, seed=seed)
            result = Trainer(config, progress=False, echo=lambda line: None).fit(model, split)
            q = Query.from_csr(np.full(len(signal), -1), signal, cases.memory_indptr,
                               cases.memory_tokens)
            top1 = float((model.score_all(q).argmax(1).numpy() == truth.partner[decided[signal]]).mean())
            runs.append({"metrics": evaluate_purchases(model, cases, KS), "signal_top1": top1,
                         "train_seconds": result.train_seconds})
        out["rows"][name] = runs
    return out


def section_yoochoose(seeds: int, epochs: int) -> dict:
    import torch
    from memrec.runs import train_run
    from memrec.training.config import load_config
    torch.set_num_threads(1)
    config = load_config(path=ROOT / "configs" / "dmn_yoochoose1_64.toml",
                         overrides=[f"train.epochs={epochs}"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = train_run(config, SHARED / "yoochoose1_64", Path(tmp) / "run", progress=False)
        log = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    return {"results": results, "epochs": epochs, "wall_seconds": time.perf_counter() - start,
            "log": log, "peak_rss_mb": peak_rss_mb()}


# -- report ---------------------------------------------------------------------------------------
def synthetic_table(section: dict) -> list[str]:
    cols = [f"{m}@{k}" for k in KS for m in ("Precision", "Recall")] + ["MAP@20"]
    lines = ["| model | runs | " + " | ".join(cols) + " | signal top-1 | train s |",
             "|---" * (len(cols) + 4) + "|"]
    for name, runs in section["rows"].items():
        cells = [fmt(mean_std([r["metrics"][c] for r in runs])) for c in cols]
        top1 = (fmt(mean_std([r["signal_top1"] for r in runs])) if "signal_top1" in runs[0] else "–")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {top1} | "
                     + fmt(mean_std([r["train_seconds"] for r in runs]), 1) + " |")
    d = section["data"]
    lines += ["", f"Data: {d['n_sessions']:,} sessions, {d['n_items']:,} items, {d['n_triggers']} "
              f"trigger items, {d['events']:,} events ({d['train_events']:,} in the training "
              f"sessions); {d['test_cases']:,} test cases, {d['signal_cases']:,} of them with a "
              "purchase decided by a carted trigger (\"signal top-1\" = the share of those where "
              "the partner is ranked first)."]
    return lines


def yoochoose_table(runs: list[dict]) -> list[str]:
    stamp = json.loads((RESULTS / "stamp_sessions.json").read_text())["yoochoose1_64"]
    lines = ["| model | epochs | P@20 | MRR@20 | P@10 | MRR@10 | s / epoch |", "|---|---|---|---|---|---|---|"]
    for section in runs:
        m = section["results"]["metrics"]["session"]
        per_epoch = section["results"]["train_seconds"] / max(1, len(section["log"]))
        lines.append(f"| DMN, 2 hops (bounded run, {section['epochs']} epoch cap) | best "
                     f"{section['results']['best_epoch']} of {len(section['log'])} | "
                     f"{100 * m['HR@20']:.2f} | {100 * m['MRR@20']:.2f} | "
                     f"{100 * m['HR@10']:.2f} | {100 * m['MRR@10']:.2f} | {per_epoch:.0f} |")
    for name, run in stamp.items():
        t = run["test"]
        p20, r20 = t.get("HR@20", t.get("hit@20")), t.get("MRR@20", t.get("mrr@20"))
        p10, r10 = t.get("HR@10", t.get("hit@10")), t.get("MRR@10", t.get("mrr@10"))
        lines.append(f"| {name} (quoted) | best {run.get('best_epoch', '–')} of "
                     f"{run.get('epochs_run', '–')} | {100 * p20:.2f} | {100 * r20:.2f} | "
                     f"{100 * p10:.2f} | {100 * r10:.2f} | {run.get('seconds_per_epoch', 0):.0f} |")
    for section in runs:
        lines += ["", f"Validation HR@20 per epoch (DMN, {section['epochs']} epoch cap): "
                  + ", ".join(f"{r['valid']['session']['HR@20']:.4f}" for r in section["log"] if "valid" in r)]
    return lines


def write_report(results: dict) -> None:
    md = ["# Purchase DMN (reconstruction) — results", ""]
    if "synthetic" in results:
        md += ["## Typed synthetic sessions: next purchase (temporal split, all items ranked)", ""]
        md += synthetic_table(results["synthetic"]) + [""]
    if "yoochoose" in results:
        md += ["## Yoochoose 1/64: untyped next click (session protocol, all items ranked)", ""]
        md += yoochoose_table(results.get("yoochoose_runs", [results["yoochoose"]])) + [""]
    for section, meta in results.get("meta", {}).items():
        md.append(f"{section}: {meta['machine']}; run {meta['time']}; command `{meta['command']}`; one thread.")
    (RESULTS / "dmn_sessions.md").write_text("\n".join(md) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="+", choices=("synthetic", "yoochoose"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--synthetic-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3, help="Yoochoose epochs (bounded)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    path = RESULTS / "dmn_sessions.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "yoochoose" in results and "yoochoose_runs" not in results:
        results["yoochoose_runs"] = [results["yoochoose"]]
    if args.report_only:
        write_report(results)
        return
    meta = {"machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["benchmarks/dmn_sessions.py", *sys.argv[1:]])}
    for section in args.sections:
        epochs = args.synthetic_epochs if section == "synthetic" else args.epochs
        results[section] = globals()[f"section_{section}"](args.seeds, epochs)
        if section == "yoochoose":                     # keep every bounded run, not just the last
            results.setdefault("yoochoose_runs", []).append(results[section])
        results.setdefault("meta", {})[section] = meta
        path.write_text(json.dumps(results, indent=1))
        write_report(results)
        print(f"{section} done", flush=True)


if __name__ == "__main__":
    main()
