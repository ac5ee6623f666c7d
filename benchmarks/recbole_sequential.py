"""RecBole 1.2.1's FPMC and GRU4Rec on our leave-one-out split, scored with our protocols.

    PYTHONPATH=src .venv/bin/python benchmarks/recbole_sequential.py recbole ml-100k \
        --models FPMC,GRU4Rec --epochs 30 --seed 0 --venv /path/to/recbole-venv
    PYTHONPATH=src .venv/bin/python benchmarks/recbole_sequential.py table   # rewrite the .md only

``recbole`` reads ``../shared/data/<dataset>`` the way ``memrec train`` does with
``[data] split = "loo", n_negatives = 100`` (per user the last event -> test, the one before ->
valid, the rest -> train; users with fewer than 3 events stay in train, unevaluated; 100 stored
negatives per evaluated user) and exports that split as RecBole benchmark files
(``user_id``, ``item_id_list``, ``item_id``: one row per prediction case, histories cut to the
latest 50 items, tokens = our internal user / item indices): train = every prefix of each user's
training sequence -> its next item, valid = the whole training sequence -> the valid item,
test = the train + valid sequence -> the test item. RecBole (its own venv: ``pip install
torch recbole==1.2.1 "numpy<2" "pandas<3" "setuptools<81"``; run with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) then trains with its own ``Trainer.fit`` (early stopping
on its valid NDCG@10, patience 5) and tests its best-on-valid checkpoint.

RecBole's sequential full-sort evaluation ranks the target against *every* item, the user's
own past items included (``FullSortEvalDataLoader`` builds no history for sequential models, so
``_full_sort_batch_eval`` masks only the padding item), and tied scores are ordered however
``torch.topk`` returns them. So the child process also scores the test cases itself with
``full_sort_predict`` and counts, per test user, the items scored above / tied with the test
item (1) among all items except the user's train + valid items (the test item stays ranked),
as ``memrec.evaluation`` does, and (2) among the user's 100 stored test negatives (known ones
not ranked); the metrics come from those counts with ``memrec.metrics`` (exact expectation
under random tie-breaking). RecBole's own test numbers are kept beside them. Training runs
with one thread; seconds per epoch are RecBole's ``_train_epoch`` alone (evaluation excluded);
peak memory is the RecBole process's ``VmHWM``.
Results: ``benchmarks/results/recbole_sequential.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "recbole_sequential.json"
MAX_LEN = 50
KS = (10, 20)

# RecBole settings; everything else is RecBole 1.2.1's default
COMMON = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
          "load_col": {"inter": ["user_id", "item_id_list", "item_id"], "item": ["item_id"]},
          "alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": MAX_LEN,
          "benchmark_filename": ["train", "valid", "test"],
          "eval_args": {"order": "TO", "mode": "full"}, "repeatable": True,
          "learner": "adam", "learning_rate": 0.001, "weight_decay": 0.0, "train_batch_size": 2048,
          "eval_batch_size": 4096, "stopping_step": 5, "eval_step": 1,
          "metrics": ["Hit", "NDCG", "MRR"], "topk": list(KS), "valid_metric": "NDCG@10",
          "gpu_id": "", "use_gpu": False, "worker": 0, "show_progress": False,
          "reproducibility": True, "save_dataset": False, "save_dataloaders": False}
MODELS = {"FPMC": {"embedding_size": 64, "loss_type": "BPR",
                   "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                             "dynamic": False, "candidate_num": 0}},
          "GRU4Rec": {"embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3,
                      "loss_type": "CE", "train_neg_sample_args": None},
          "STAMP": {"embedding_size": 64, "loss_type": "CE", "train_neg_sample_args": None}}


# -- export ---------------------------------------------------------------------------------------
def export_split(dataset: str, folder: Path) -> dict:
    """Write our loo split of ``dataset`` as ``folder/<dataset>-loo.{train,valid,test}.inter``,
    the item list ``<dataset>-loo.item`` and ``folder/eval.npz`` (test users and items, known
    items, stored test negatives). The RecBole dataset is named ``<dataset>-loo``: RecBole swaps
    the data path of a dataset called ``ml-100k`` for its bundled example."""
    import numpy as np
    from memrec.evaluation import known_interactions
    from memrec.runs import prepare_split
    from memrec.training.config import DataConfig
    _, split = prepare_split(DATA / dataset, DataConfig(split="loo", n_negatives=100))
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{dataset}-loo"

    def write(part: str, users, indptr, items, rows, targets) -> int:
        lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"]
        for u, r, t in zip(users, rows, targets):
            start, end = indptr[r], indptr[r + 1]
            hist = " ".join(map(str, items[max(start, end - MAX_LEN):end]))
            lines.append(f"{u}\t{hist}\t{t}")
        (folder / f"{name}.{part}.inter").write_text("\n".join(lines) + "\n")
        return len(lines) - 1

    # train: every prefix sequence[:k] -> sequence[k], k >= 1, of each user's training sequence
    indptr, items = split.train.sequences()
    lengths = np.diff(indptr)
    users = np.repeat(np.arange(len(lengths)), np.maximum(lengths - 1, 0))
    k = np.concatenate([np.arange(1, n) for n in lengths if n > 1])
    targets = indptr[users] + k                                 # position of the next item
    kept = np.minimum(k, MAX_LEN)                               # the latest 50 of the prefix
    hist_indptr = np.concatenate([[0], np.cumsum(kept)])
    hist_items = np.concatenate([items[t - n:t] for t, n in zip(targets, kept)])
    n_train = write("train", users, hist_indptr, hist_items, np.arange(len(k)), items[targets])
    # every item, so that RecBole scores all of ours: an item whose only event is the single
    # event of a one-event user is in no .inter row (3 such items in amazon-games)
    all_items = "".join(f"{i}\n" for i in range(split.train.n_items))
    (folder / f"{name}.item").write_text("item_id:token\n" + all_items)

    # valid / test: one case per evaluated user, history = what memrec's Evaluator gives the model
    rows = {}
    for part, known in (("valid", split.train), ("test", known_interactions(split, "test"))):
        held = getattr(split, part)
        order = np.argsort(held.user, kind="stable")
        users_p, targets = held.user[order], held.item[order]
        if len(np.unique(users_p)) != len(users_p):
            raise SystemExit(f"{part}: more than one held-out item per user; not a loo split")
        k_indptr, k_items = known.sequences()
        rows[part] = write(part, users_p, k_indptr, k_items, users_p, targets)
        if part == "test":
            seen = known.user_items()
            neg = split.test_negatives
            np.savez(folder / "eval.npz", n_items=split.train.n_items, test_users=users_p,
                     test_items=targets, known_indptr=seen.indptr.astype(np.int64),
                     known_items=seen.indices.astype(np.int64), neg_users=neg.users,
                     neg_items=neg.negatives)
    return {"users": int(split.train.n_users), "items": int(split.train.n_items),
            "train_events": len(split.train), "train_rows": n_train, "valid_rows": rows["valid"],
            "test_rows": rows["test"], "max_history": MAX_LEN}


# -- RecBole (runs inside the RecBole venv) -------------------------------------------------------
RECBOLE_CHILD = r'''
import json, os, sys, time
import numpy as np
import torch
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))   # the parent's --threads
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed, get_model

def peak_rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024

model_name, dataset, folder, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
config = Config(model=model_name, dataset=dataset,
                config_dict={**settings, "data_path": os.path.dirname(folder),
                             "checkpoint_dir": folder + "/saved"})
init_seed(config["seed"], config["reproducibility"])
ds = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, ds)
model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
trainer = Trainer(config, model)

# time RecBole's own loop: _train_epoch alone, _valid_epoch apart; _save_checkpoint = new best
history, best = [], {"epoch": None}
train_epoch, valid_epoch, save = trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint
def timed_train(data, epoch_idx, loss_func=None, show_progress=False):
    start = time.perf_counter()
    loss = train_epoch(data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
    history.append({"epoch": epoch_idx + 1, "seconds": time.perf_counter() - start,
                    "loss": float(sum(loss) if isinstance(loss, tuple) else loss),
                    "load_avg_1min": os.getloadavg()[0]})   # the machine's load, other jobs included
    return loss
def timed_valid(data, show_progress=False):
    start = time.perf_counter()
    score, result = valid_epoch(data, show_progress=show_progress)
    history[-1].update(valid_seconds=time.perf_counter() - start,
                       valid={k: float(v) for k, v in result.items()})
    return score, result
def saving(epoch, verbose=True, **kwargs):
    best["epoch"] = epoch + 1
    return save(epoch, verbose=verbose, **kwargs)
trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint = timed_train, timed_valid, saving
start = time.perf_counter()
trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
fit_seconds = time.perf_counter() - start
peak_train = peak_rss_mb()
recbole_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)  # best-on-valid

# our protocols, from the same best model: tie-aware counts per test user
ev = np.load(folder + "/eval.npz")
n_items = int(ev["n_items"])
token2id = ds.field2token_id["item_id"]
missing = [i for i in range(n_items) if str(i) not in token2id]
if missing:
    raise SystemExit(f"{len(missing)} of our items never reach RecBole (e.g. {missing[:5]})")
perm = np.array([token2id[str(i)] for i in range(n_items)])              # our index -> RecBole id
item_of = np.array([int(t) if t != "[PAD]" else -1 for t in ds.field2id_token["item_id"]])
user_of = np.array([int(t) if t != "[PAD]" else -1 for t in ds.field2id_token["user_id"]])
k_indptr, k_items = ev["known_indptr"], ev["known_items"]
neg_row = np.full(len(k_indptr) - 1, -1)
neg_row[ev["neg_users"]] = np.arange(len(ev["neg_users"]))
out = {k: [] for k in ("users", "items", "full_above", "full_tied", "full_n",
                       "sampled_above", "sampled_tied", "sampled_n")}
model.eval()
with torch.no_grad():
    for interaction, _, _, _ in test_data:
        all_scores = model.full_sort_predict(interaction.to(config["device"])).float().cpu().numpy()
        all_users = user_of[interaction["user_id"].numpy()]
        all_targets = item_of[interaction["item_id"].numpy()]
        for a in range(0, len(all_users), 1024):
            scores = all_scores[a:a + 1024][:, perm]                         # [B, our items]
            users, targets = all_users[a:a + 1024], all_targets[a:a + 1024]
            if np.isnan(scores).any():
                raise SystemExit("the model produced NaN scores")
            b = np.arange(len(users))
            lens = k_indptr[users + 1] - k_indptr[users]
            cols = np.concatenate([k_items[k_indptr[u]:k_indptr[u + 1]] for u in users])
            known = np.zeros(scores.shape, bool)
            known[np.repeat(b, lens), cols] = True
            target = scores[b, targets][:, None]
            ranked = ~known
            ranked[b, targets] = True                     # a repeat consumption is still a target
            out["full_above"].append(np.count_nonzero((scores > target) & ranked, axis=1))
            out["full_tied"].append(np.count_nonzero((scores == target) & ranked, axis=1))
            out["full_n"].append(np.count_nonzero(ranked, axis=1))
            if (neg_row[users] < 0).any():
                raise SystemExit("some test users have no stored negatives")
            neg = ev["neg_items"][neg_row[users]]                              # [B, 100]
            neg_scores, neg_ranked = scores[b[:, None], neg], ~known[b[:, None], neg]
            out["sampled_above"].append(np.count_nonzero((neg_scores > target) & neg_ranked, axis=1))
            out["sampled_tied"].append(1 + np.count_nonzero((neg_scores == target) & neg_ranked, axis=1))
            out["sampled_n"].append(1 + np.count_nonzero(neg_ranked, axis=1))
            out["users"].append(users)
            out["items"].append(targets)
np.savez(folder + f"/{model_name}.counts.npz", **{k: np.concatenate(v) for k, v in out.items()})
print(json.dumps({"model": model_name, "history": history, "best_epoch": best["epoch"],
                  "fit_seconds": fit_seconds, "recbole_test": {k: float(v) for k, v in recbole_test.items()},
                  "peak_rss_train_mb": peak_train, "peak_rss_mb": peak_rss_mb(),
                  "threads": torch.get_num_threads(), "recbole_items": int(ds.item_num),
                  "recbole_users": int(ds.user_num),
                  "train_neg_sample_args": dict(config["train_neg_sample_args"]),
                  "eval_args": dict(config["eval_args"])}))
'''


def run_recbole(model: str, dataset: str, folder: Path, epochs: int, seed: int, venv: Path,
                threads: int) -> tuple[dict, dict]:
    """Train ``model`` in the RecBole venv on the exported files; returns (its report, settings)."""
    settings = {**COMMON, **MODELS[model], "epochs": epochs, "seed": seed}
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    out = subprocess.run([str(venv / "bin" / "python"), "-c", RECBOLE_CHILD, model, f"{dataset}-loo",
                          str(folder), json.dumps(settings)], capture_output=True, text=True, env=env,
                         cwd=folder)
    if out.returncode != 0:
        raise SystemExit(f"RecBole {model} failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["wall_seconds"] = time.perf_counter() - start
    return report, settings


def our_metrics(counts_file: Path) -> tuple[dict, dict]:
    """(full, sampled) metrics from the child's rank counts, with memrec's tie-exact formulas,
    after checking the counts cover exactly our split's test (user, item) pairs."""
    import numpy as np
    import torch
    from memrec.metrics import RankCounts, metric_values
    c = np.load(counts_file)
    ev = np.load(counts_file.parent / "eval.npz")
    order = np.argsort(c["users"], kind="stable")
    if not (np.array_equal(c["users"][order], ev["test_users"])
            and np.array_equal(c["items"][order], ev["test_items"])):
        raise SystemExit(f"{counts_file.name}: RecBole's test cases are not our test pairs")

    def means(above, tied, n) -> dict:
        one = lambda x: torch.as_tensor(x, dtype=torch.float64)[:, None]  # noqa: E731
        ones = torch.ones(len(above), 1, dtype=torch.float64)
        counts = RankCounts(one(above), one(tied), torch.zeros_like(ones), ones,
                            torch.ones(len(above), 1, dtype=torch.bool),
                            torch.as_tensor(n, dtype=torch.float64), ones[:, 0])
        return {k: float(torch.nan_to_num(v, nan=0.0).mean())
                for k, v in metric_values(counts, KS).items()}

    return (means(c["full_above"], c["full_tied"], c["full_n"]),
            means(c["sampled_above"], c["sampled_tied"], c["sampled_n"]))


# -- results --------------------------------------------------------------------------------------
def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def markdown(results: dict) -> str:
    lines = ["# RecBole 1.2.1 FPMC and GRU4Rec on memrec's leave-one-out split", "",
             "Full: the test item against every item except the user's train + valid items; sampled: "
             "against the user's 100 stored test negatives. Both scored by memrec's metrics (exact "
             "under ties) from RecBole's best-on-valid model. s/epoch: RecBole's training loop "
             "alone, 1 thread. Epochs: run / cap (early stopping on RecBole's valid NDCG@10, "
             "patience 5).", "",
             "| dataset | model | full HR@10 | full NDCG@10 | full HR@20 | full NDCG@20 | sampled HR@10 "
             "| sampled NDCG@10 | s/epoch | epochs | best epoch | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    own = ["", "RecBole's own test numbers (every item ranked, the user's past items included; "
           "ties by `torch.topk`):", "", "| dataset | model | Hit@10 | NDCG@10 | Hit@20 | NDCG@20 |",
           "|---|---|---|---|---|---|"]
    notes = []
    for dataset, rows in results.items():
        for name, r in rows.items():
            f, s, t = r["full"], r["sampled"], r["recbole_test"]
            lines.append(f"| {dataset} | {name} | {f['HR@10']:.4f} | {f['NDCG@10']:.4f} | "
                         f"{f['HR@20']:.4f} | {f['NDCG@20']:.4f} | {s['HR@10']:.4f} | "
                         f"{s['NDCG@10']:.4f} | {r['seconds_per_epoch']:.1f} | "
                         f"{r['epochs_run']} / {r['epoch_cap']} | {r['best_epoch']} | "
                         f"{r['peak_rss_mb']:.0f} |")
            own.append(f"| {dataset} | {name} | {t['hit@10']:.4f} | {t['ndcg@10']:.4f} | "
                       f"{t['hit@20']:.4f} | {t['ndcg@20']:.4f} |")
            if r["epochs_run"] == r["epoch_cap"] and r["epoch_cap"] - r["best_epoch"] <= 5:
                notes.append(f"* {name} on {dataset}: stopped by the `--epochs` cap "
                             f"({r['epoch_cap']}), not by early stopping (best epoch {r['best_epoch']}); "
                             f"{r['wall_seconds'] / 60:.0f} min wall in all")
    notes.append("* timings are wall-clock seconds with one torch thread; other jobs on the machine "
                 "are not controlled (`history[].load_avg_1min` in the json records the load where "
                 "measured)")
    return "\n".join(lines + [""] + notes + own) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["recbole", "table"])
    parser.add_argument("dataset", nargs="?", help="a folder under ../shared/data (recbole)")
    parser.add_argument("--models", default="FPMC,GRU4Rec")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--venv", type=Path, default=ROOT.parent / "recbole-venv")
    args = parser.parse_args()
    results = load_results()
    if args.mode == "recbole":
        if not args.dataset:
            parser.error("recbole needs a dataset")
        models = args.models.split(",")
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / f"{args.dataset}-loo"
            export = export_split(args.dataset, folder)
            for model in models:
                r, settings = run_recbole(model, args.dataset, folder, args.epochs, args.seed,
                                          args.venv, args.threads)
                full, sampled = our_metrics(folder / f"{model}.counts.npz")
                train_s = [e["seconds"] for e in r["history"]]
                results.setdefault(args.dataset, {})[f"RecBole 1.2.1 {model}"] = {
                    "full": full, "sampled": sampled, "recbole_test": r["recbole_test"],
                    "seconds_per_epoch": sum(train_s) / len(train_s), "train_seconds": sum(train_s),
                    "fit_seconds": r["fit_seconds"], "wall_seconds": r["wall_seconds"],
                    "epochs_run": len(train_s), "epoch_cap": args.epochs, "best_epoch": r["best_epoch"],
                    "peak_rss_mb": r["peak_rss_mb"], "peak_rss_train_mb": r["peak_rss_train_mb"],
                    "threads": r["threads"], "seed": args.seed, "export": export,
                    "recbole_users": r["recbole_users"], "recbole_items": r["recbole_items"],
                    "settings": {**settings, "train_neg_sample_args": r["train_neg_sample_args"],
                                 "eval_args": r["eval_args"]},
                    "history": r["history"]}
                RESULTS.parent.mkdir(parents=True, exist_ok=True)   # save after every model
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
