"""STAMP on the SR-GNN session files: our runs beside RecBole 1.2.1's STAMP and GRU4Rec.

    # ours: memrec train stamp --data ../shared/data/yoochoose1_64 \
    #           --config configs/stamp_yoochoose1_64.toml --out RUN_DIR
    PYTHONPATH=src .venv/bin/python benchmarks/stamp_sessions.py collect RUN_DIR [RUN_DIR ...]
    PYTHONPATH=src .venv/bin/python benchmarks/stamp_sessions.py recbole yoochoose1_64 \
        --models STAMP,GRU4Rec --epochs 3 --venv /path/to/recbole-venv
    PYTHONPATH=src .venv/bin/python benchmarks/stamp_sessions.py speed yoochoose1_64   # 1 epoch each

``recbole`` exports *our* split (the same validation sessions carved from training, the same
test pairs) as RecBole benchmark files (``session_id``, ``item_id_list``, ``item_id``: one row
per prefix), then trains RecBole's model in its own venv (``pip install torch==2.13.0
recbole==1.2.1 "numpy<2" "pandas<3" "setuptools<81"``; run with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) with STAMP's recipe (d = 100, Adam 0.003, batch 512,
full softmax), timing every training epoch, choosing the epoch on validation and reporting the
test Hit@20 (= P@20) and MRR@20 over all items. Both sides run with the same thread count.
Results: ``benchmarks/results/stamp_sessions.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "stamp_sessions.json"
PUBLISHED = {"yoochoose1_64": {"STAMP (authors' log)": (68.74, 29.67)},
             "diginetica": {"STAMP (SR-GNN re-run, time-ordered)": (45.64, 14.32),
                            "STAMP (authors, unordered clicks)": (62.03, 27.38)}}


# -- export ---------------------------------------------------------------------------------------
def export_split(dataset: str, out: Path) -> None:
    """Write our split of ``dataset`` as RecBole benchmark files ``out/<dataset>/<dataset>.{train,valid,test}.inter``."""
    import numpy as np
    from memrec.runs import prepare_split
    from memrec.training.config import load_config
    config = load_config("stamp", ROOT / "configs" / f"stamp_{dataset}.toml")
    _, split = prepare_split(DATA / dataset, config.data)
    indptr, items = split.train.sequences()
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    raw = split.train.items.raw

    def write(part: str, case_indptr, case_items, targets) -> None:
        lines = ["session_id:token\titem_id_list:token_seq\titem_id:token"]
        for c in range(len(targets)):
            hist = " ".join(map(str, raw[case_items[case_indptr[c]:case_indptr[c + 1]]]))
            lines.append(f"{c}\t{hist}\t{raw[targets[c]]}")
        (folder / f"{dataset}.{part}.inter").write_text("\n".join(lines) + "\n")

    # training prefixes: every (sequence[:k], sequence[k])
    lengths = np.diff(indptr)
    starts = np.repeat(indptr[:-1], np.maximum(lengths - 1, 0))
    k = np.concatenate([np.arange(1, n) for n in lengths if n > 1])
    hist_indptr = np.concatenate([[0], np.cumsum(k)])
    hist_items = np.concatenate([items[s:s + n] for s, n in zip(starts, k)])
    write("train", hist_indptr, hist_items, items[starts + k])
    for part in ("valid", "test"):
        c = getattr(split, f"{part}_cases")
        write(part, c.indptr, c.items, c.targets)


# -- RecBole (runs inside the RecBole venv) -------------------------------------------------------
RECBOLE_CHILD = r'''
import json, sys, time, copy, torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed, get_model
model_name, dataset, data_path, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = {"data_path": data_path, "benchmark_filename": ["train", "valid", "test"],
       "USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id",
       "load_col": {"inter": ["session_id", "item_id_list", "item_id"]},
       "alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": 200,
       "embedding_size": 100, "hidden_size": 100, "learning_rate": 0.003, "train_batch_size": 512,
       "eval_batch_size": 512, "loss_type": "CE", "train_neg_sample_args": None,
       "epochs": epochs, "metrics": ["Hit", "MRR"], "topk": [10, 20], "valid_metric": "Hit@20",
       "eval_args": {"order": "TO", "mode": "full"}, "device": "cpu", "use_gpu": False,
       "show_progress": False, "seed": 0, "reproducibility": True, "save_dataset": False}
config = Config(model=model_name, dataset=dataset, config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
ds = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, ds)
model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
trainer = Trainer(config, model)
history, best, best_state = [], -1.0, None
for epoch in range(epochs):
    start = time.perf_counter()
    loss = trainer._train_epoch(train_data, epoch, show_progress=False)
    seconds = time.perf_counter() - start
    score, result = trainer._valid_epoch(valid_data, show_progress=False)
    history.append({"epoch": epoch + 1, "seconds": seconds, "loss": float(loss), "valid": dict(result)})
    if score > best:
        best, best_state = score, copy.deepcopy(model.state_dict())
model.load_state_dict(best_state)
test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
print(json.dumps({"model": model_name, "history": history, "test": dict(test),
                  "threads": torch.get_num_threads()}))
'''


def run_recbole(model: str, dataset: str, epochs: int, venv: Path, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        export_split(dataset, Path(tmp))
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run([str(venv / "bin" / "python"), "-c", RECBOLE_CHILD, model, dataset, tmp,
                              str(epochs)], capture_output=True, text=True, env=env, cwd=tmp)
        if out.returncode != 0:
            raise SystemExit(f"RecBole {model} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def time_ours(dataset: str, threads: int) -> float:
    """Seconds of one training epoch of our STAMP with the shipped config (a fresh process)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
        subprocess.run([str(ROOT / ".venv" / "bin" / "memrec"), "train", "stamp", "--data", str(DATA / dataset),
                        "--config", str(ROOT / "configs" / f"stamp_{dataset}.toml"), "--epochs", "1",
                        "--out", str(Path(tmp) / "run"), "--no-progress"], check=True, env=env,
                       capture_output=True)
        log = json.loads((Path(tmp) / "run" / "log.jsonl").read_text().splitlines()[0])
        return log["seconds"]


# -- results --------------------------------------------------------------------------------------
def ours(run: Path) -> dict:
    r = json.loads((run / "results.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {"model": r["model"], "best_epoch": r["best_epoch"], "epochs_run": len(log),
            "seconds_per_epoch": sum(e["seconds"] for e in log) / len(log),
            "test": r["metrics"]["session"], "data": r["data"]}


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def markdown(results: dict) -> str:
    lines = ["# STAMP on the SR-GNN session files (P@20 = HR@20, MRR@20 over all items, in %)", ""]
    for dataset, rows in results.items():
        if dataset == "speed":
            continue
        lines += [f"## {dataset}", "", "| model | P@20 | MRR@20 | P@10 | MRR@10 | s/epoch | epochs (best) |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            t = r["test"]
            get = lambda *keys: next((100 * t[k] for k in keys if k in t), float("nan"))  # noqa: E731
            lines.append(f"| {name} | {get('HR@20', 'hit@20'):.2f} | {get('MRR@20', 'mrr@20'):.2f} | "
                         f"{get('HR@10', 'hit@10'):.2f} | {get('MRR@10', 'mrr@10'):.2f} | "
                         f"{r['seconds_per_epoch']:.0f} | {r['epochs_run']} ({r['best_epoch']}) |")
        for name, (p, mrr) in PUBLISHED.get(dataset, {}).items():
            lines.append(f"| {name} | {p:.2f} | {mrr:.2f} | – | – | – | – |")
        lines.append("")
    if "speed" in results:
        lines += ["## One STAMP training epoch, back to back in one run", "",
                  "| data | memrec s | RecBole s | RecBole / memrec | threads |", "|---|---|---|---|---|"]
        for dataset, r in results["speed"].items():
            lines.append(f"| {dataset} | {r['memrec_s_per_epoch']:.0f} | {r['recbole_s_per_epoch']:.0f} | "
                         f"{r['ratio']:.2f} | {r['threads']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["collect", "recbole", "speed"])
    parser.add_argument("args", nargs="+", help="run folders (collect) or a dataset name (recbole)")
    parser.add_argument("--models", default="STAMP,GRU4Rec")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--venv", type=Path, default=ROOT.parent / "recbole-venv")
    args = parser.parse_args()
    results = load_results()
    if args.mode == "collect":
        for run in map(Path, args.args):
            r = ours(run)
            results.setdefault(r["data"], {})[f"memrec {r['model']} ({run.name})"] = r
    elif args.mode == "speed":   # one epoch each, back to back, same threads: a fair ratio
        dataset = args.args[0]
        mine = time_ours(dataset, args.threads)
        theirs = run_recbole("STAMP", dataset, 1, args.venv, args.threads)["history"][0]["seconds"]
        results.setdefault("speed", {})[dataset] = {"memrec_s_per_epoch": mine, "recbole_s_per_epoch": theirs,
                                                    "ratio": theirs / mine, "threads": args.threads}
    else:
        dataset = args.args[0]
        for model in args.models.split(","):
            r = run_recbole(model, dataset, args.epochs, args.venv, args.threads)
            best = max(r["history"], key=lambda e: e["valid"].get("hit@20", 0))
            results.setdefault(dataset, {})[f"RecBole 1.2.1 {model}"] = {
                "test": r["test"], "seconds_per_epoch": sum(e["seconds"] for e in r["history"]) / len(r["history"]),
                "epochs_run": len(r["history"]), "best_epoch": best["epoch"], "threads": r["threads"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
