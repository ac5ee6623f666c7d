"""Seconds per training epoch: our KSR against RecBole 1.2.1's KSR, back to back, same data.

    PYTHONPATH=src .venv/bin/python benchmarks/recbole_ksr.py ml-100k --venv /work/recbole-venv
    PYTHONPATH=src .venv/bin/python benchmarks/recbole_ksr.py ml-100k --accuracy --epochs 4  # its test accuracy

RecBole reads the same ML-100K atomic files (``../shared/data/ml-100k/recbole``: ``.inter``,
``.kg``, ``.link``) plus the ``.ent_feature`` / ``.rel_feature`` files our TransE run exported
(``runs/transe_ml-100k/export``), through ``preload_weight`` — the files RecBole's KSR needs and
RecBole cannot make. Its KSR keeps the relation matrix in the file's float64, which breaks the
float32 matmul of its read, so the child casts ``model.relation_Matrix`` to float32 (the
workaround the issue names). RecBole uses its own leave-one-out split by time (the same rule as
ours: last event → test, the one before → valid), histories cut to its default 50 items, its
default CE loss; we time its ``_train_epoch`` only. Our side: ``memrec train ksr`` with the
shipped config for one epoch, our ``seconds`` of that epoch (BPR pretraining and evaluation
excluded). Both with one thread. The accuracy of RecBole's KSR is not measured here (no time for a
full run in this issue; see docs/models/ksr.md).

Results: ``benchmarks/results/recbole_ksr.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"

CHILD = r'''
import copy, json, sys, time, torch
torch.set_num_threads(1)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import KSR
from recbole.trainer import Trainer
from recbole.utils import init_seed
folder, name, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
accuracy = len(sys.argv) > 4 and sys.argv[4] == "accuracy"
cfg = Config(model="KSR", dataset=name, config_dict={
    "data_path": folder, "device": "cpu", "use_gpu": False, "show_progress": False, "seed": 0,
    "load_col": {"inter": ["user_id", "item_id", "timestamp"], "kg": ["head_id", "relation_id", "tail_id"],
                 "link": ["item_id", "entity_id"], "ent_feature": ["ent_id", "ent_vec"], "rel_feature": ["rel_id", "rel_vec"]},
    "additional_feat_suffix": ["ent_feature", "rel_feature"], "alias_of_entity_id": ["ent_id"],
    "alias_of_relation_id": ["rel_id"], "preload_weight": {"ent_id": "ent_vec", "rel_id": "rel_vec"},
    "train_neg_sample_args": None, "embedding_size": 64, "hidden_size": 128, "kg_embedding_size": 64,
    "freeze_kg": True, "epochs": epochs, "train_batch_size": 1024, "eval_step": epochs,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "eval_batch_size": 4096})
init_seed(0, True)
dataset = create_dataset(cfg)
train, valid, test = data_preparation(cfg, dataset)
model = KSR(cfg, train._dataset)
model.relation_Matrix = model.relation_Matrix.float()      # float64 in RecBole: cast (see doc)
trainer = Trainer(cfg, model)
seconds, history, best, best_state = [], [], -1.0, None
for epoch in range(epochs):
    start = time.perf_counter()
    trainer._train_epoch(train, epoch, show_progress=False)
    seconds.append(time.perf_counter() - start)
    if accuracy:                                   # choose the epoch on validation, test once
        score, result = trainer._valid_epoch(valid, show_progress=False)
        history.append({"epoch": epoch + 1, "valid": {k: float(v) for k, v in result.items()}})
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
with open("/proc/self/status") as fh:        # the process's high-water mark, data loading included
    peak = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024
out = {"seconds": seconds, "train_cases": len(train._dataset), "relations": int(model.relation_Matrix.shape[0]),
       "peak_rss_mb": peak}
if accuracy:
    model.load_state_dict(best_state)
    test = trainer.evaluate(test, load_best_model=False, show_progress=False)
    out.update(history=history, test={k: float(v) for k, v in test.items()},
               best_epoch=max(history, key=lambda h: h["valid"]["ndcg@10"])["epoch"])
print(json.dumps(out))
'''


def recbole_epoch(dataset: str, venv: Path, epochs: int, accuracy: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        name = dataset.replace("-", "") + "kg"
        folder = Path(tmp) / name
        folder.mkdir()
        for suffix in ("inter", "kg", "link"):
            (folder / f"{name}.{suffix}").symlink_to(DATA / dataset / "recbole" / f"{dataset}.{suffix}")
        export = ROOT / "runs" / f"transe_{dataset}" / "export"
        for suffix in ("ent_feature", "rel_feature"):
            (folder / f"{name}.{suffix}").write_bytes((export / f"{dataset}.{suffix}").read_bytes())
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        proc = subprocess.run([str(venv / "bin" / "python"), "-c", CHILD, tmp + "/", name, str(epochs)]
                              + (["accuracy"] if accuracy else []),
                              capture_output=True, text=True, env=env, cwd=tmp)   # its log/ folders stay there
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def our_epoch(dataset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
        cmd = [sys.executable, "-m", "memrec.cli", "train", "ksr", "--data", str(DATA / dataset / "recbole"),
               "--config", str(ROOT / "configs" / f"ksr_{dataset}.toml"), "--out", str(Path(tmp) / "run"),
               "--set", "train.epochs=1", "--set", f'model.transe="{ROOT / "runs" / f"transe_{dataset}"}"',
               "--set", 'train.test_protocols="sampled"', "--set", 'train.valid_protocol="sampled"']
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        log = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        # ours runs first, so the children's high-water mark so far is this run's (pretraining,
        # data loading and evaluation included)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"seconds": [log[-1]["seconds"]], "train_cases": int(log[-1]["seconds"] * log[-1]["examples_per_s"]),
                "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["ml-100k"])
    parser.add_argument("--venv", type=Path, default=Path("/work/recbole-venv"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--accuracy", action="store_true",
                        help="train RecBole's KSR for --epochs, choose the epoch on its validation "
                             "NDCG@10, report its full-ranking test Hit@10 / NDCG@10 (no timing of ours)")
    args = parser.parse_args()
    if args.accuracy:
        theirs = recbole_epoch(args.dataset, args.venv, args.epochs, accuracy=True)
        theirs["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        theirs["loadavg_1min"] = os.getloadavg()[0]
        (RESULTS / "recbole_ksr_accuracy.json").write_text(json.dumps(theirs, indent=2) + "\n")
        print(json.dumps(theirs, indent=2))
        return
    ours = our_epoch(args.dataset)
    load_between = os.getloadavg()[0]
    theirs = recbole_epoch(args.dataset, args.venv, args.epochs)
    result = {"dataset": args.dataset, "ours": ours, "recbole": theirs,
              "speedup": (sum(theirs["seconds"]) / len(theirs["seconds"])) / ours["seconds"][0],
              "loadavg_1min": [load_between, os.getloadavg()[0]],
              "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recbole_ksr.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "recbole_ksr.md").write_text(
        "# KSR seconds per training epoch, ours vs RecBole 1.2.1 (one thread each, back to back)\n\n"
        f"| dataset | ours s/epoch | ours training cases | ours peak MB | RecBole s/epoch | RecBole training cases | RecBole peak MB | RecBole / ours |\n|---|---|---|---|---|---|---|---|\n"
        f"| {args.dataset} | {ours['seconds'][0]:.1f} | {ours['train_cases']:,} | {ours['peak_rss_mb']:.0f} | "
        f"{sum(theirs['seconds']) / len(theirs['seconds']):.1f} | {theirs['train_cases']:,} | {theirs['peak_rss_mb']:.0f} | {result['speedup']:.2f}× |\n\n"
        f"1-min load average {result['loadavg_1min'][0]:.1f}–{result['loadavg_1min'][1]:.1f} on {os.cpu_count()} CPUs "
        f"(shared machine). Ours: BPR with 10 negatives over every prefix of the full histories; RecBole: "
        f"its default CE over all items, histories cut to 50. {result['date']}.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
