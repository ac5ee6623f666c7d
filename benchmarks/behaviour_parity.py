"""Behaviour parity of a refactor: the validation metrics after 2 epochs of the shipped recipes
(CMN, STAMP, KSR, RUM-F, NMRN with uniform negatives), trained by two source trees, compared.

    # a checkout of the old commit beside this one, e.g. `git worktree add ../old fb9bb6e`
    python benchmarks/behaviour_parity.py run --src ../old/src --out runs/parity/before \\
        --transe runs/transe_ml-100k
    python benchmarks/behaviour_parity.py run --src src --out runs/parity/after --transe runs/transe_ml-100k
    python benchmarks/behaviour_parity.py compare runs/parity/before runs/parity/after \\
        --json benchmarks/results/behaviour_parity.json

Both trees train with ``OMP_NUM_THREADS=1`` and PyTorch's deterministic kernels (the trainer's
default), so equal code gives equal numbers bit for bit; KSR reads one TransE run for both (train
it once with ``memrec train transe``). Needs ``../shared/data``. STAMP runs without its refit
(only the validation metric of the first phase is compared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONFIGS = ROOT / "configs"

#: name → (model, data, config, extra overrides); the metric each recipe selects epochs on
RECIPES = {
    "rumf": ("rumf", DATA / "ml-100k", "rumf_ml-100k.toml", [], "NDCG@10"),
    "nmrn": ("nmrn", DATA / "ml-100k", "nmrn_ml-100k.toml", ['train.sampler="uniform"'], "NDCG@10"),
    "ksr": ("ksr", DATA / "ml-100k" / "recbole", "ksr_ml-100k.toml", [], "NDCG@10"),
    "cmn": ("cmn", DATA / "citeulike-a", "cmn_citeulike-a.toml", [], "NDCG@10"),
    "stamp": ("stamp", DATA / "yoochoose1_64", "stamp_yoochoose1_64.toml", ["train.refit=false"], "HR@20"),
}


def run(src: Path, out: Path, transe: Path | None, names: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1"}
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        model, data, config, extra, _ = RECIPES[name]
        if name == "ksr":
            if transe is None:
                sys.exit("ksr needs --transe RUN (memrec train transe ... --out RUN)")
            extra = extra + [f'model.transe="{transe.resolve()}"']
        args = [sys.executable, "-c", "from memrec.cli import main; main()", "train", model,
                "--data", str(data), "--config", str(CONFIGS / config), "--epochs", "2",
                "--out", str(out / name), "--no-progress"]
        for override in extra:
            args += ["--set", override]
        with open(out / f"{name}.log", "w") as log:
            code = subprocess.call(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        print(f"{name}: exit {code}", flush=True)


def validation(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if "valid" in r]


def compare(before: Path, after: Path, json_out: Path | None) -> None:
    table = {}
    for name, (*_, metric) in RECIPES.items():
        if not ((before / name / "log.jsonl").is_file() and (after / name / "log.jsonl").is_file()):
            print(f"{name}: missing")
            continue
        for a, b in zip(validation(before / name), validation(after / name)):
            (protocol, va), = a["valid"].items()
            (_, vb), = b["valid"].items()
            diff = max(abs(va[k] - vb[k]) for k in va if k in vb)
            table[f"{name} epoch {a['epoch']}"] = {"protocol": protocol, "metric": metric,
                                                   "before": va[metric], "after": vb[metric],
                                                   "max_abs_diff_all_metrics": diff}
            print(f"{name:<6} epoch {a['epoch']}  {protocol} {metric}  before {va[metric]:.6f}  "
                  f"after {vb[metric]:.6f}  max |diff| over all metrics {diff:.2e}")
    if json_out is not None:
        json_out.write_text(json.dumps(table, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("run")
    r.add_argument("--src", type=Path, required=True, help="the source tree's src/ folder")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--transe", type=Path, default=None, help="a TransE run folder for KSR")
    r.add_argument("--only", default=",".join(RECIPES), help="comma list of recipes")
    c = verbs.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.verb == "run":
        run(args.src, args.out, args.transe, [n.strip() for n in args.only.split(",")])
    else:
        compare(args.before, args.after, args.json)


if __name__ == "__main__":
    main()
