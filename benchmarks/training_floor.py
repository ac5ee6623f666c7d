"""Training speed against its matmul floor: STAMP and GRU4Rec on Yoochoose 1/64 (shipped recipes),
fp32 and bf16, in one process, back to back.

    PYTHONPATH=src .venv/bin/python benchmarks/training_floor.py [--batches 40] [--threads 1]

For each model and precision, ``--batches`` batches spread evenly through epoch 1 (the same
batches every time: the task's generator is seeded alike) are trained by memrec's own ``Trainer`` (forward,
loss, backward, per-tensor clipping, Adam step — the epoch loop users run), then the **floor**
runs on the same batches: only the output layer every next-item model must compute, the
prefixes' states [P, d] times the item table [n_items, d] → softmax cross-entropy → backward to
both (6·P·n_items·d FLOP), under the same autocast. ``× floor`` = training seconds / floor
seconds; the floor's FLOP rate is this CPU's GEMM rate at the output layer's shapes. The epoch
estimate scales the batches' time to the epoch's number of batches.

Results: benchmarks/results/training_floor.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from common import ROOT

DATA = ROOT.parent / "shared" / "data" / "yoochoose1_64"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("stamp", "gru4rec")


class SpreadBatches:
    """A task that yields ``n`` of the wrapped task's epoch-1 batches, evenly spaced through the
    epoch (its first batches are not typical: length-bucketed batches put long sessions, whose
    attention costs grow with the square of their length, together)."""

    def __init__(self, task, n: int, generator_seed: int):
        self.task = task
        every = list(task.batches(torch.Generator().manual_seed(generator_seed)))
        self.epoch_batches = len(every)
        self.kept = every[::max(1, len(every) // n)][:n]
        self.n_examples = sum(batch.size for batch in self.kept)

    def batches(self, generator):
        return iter(self.kept)

    def loss(self, model, batch):
        return self.task.loss(model, batch)


def train_seconds(name: str, split, precision: str, n: int) -> tuple[float, "SpreadBatches", torch.nn.Module]:
    from memrec.models import build
    from memrec.training.config import load_config
    from memrec.training.tasks import make_task
    from memrec.training.trainer import Trainer
    config = load_config(name, ROOT / "configs" / f"{name}_yoochoose1_64.toml",
                         ["train.epochs=1", f'train.precision="{precision}"', "train.patience=0"])
    torch.manual_seed(config.train.seed)
    model = build(config.model, split.train.n_users, split.train.n_items, config.model_params)
    model.prepare(split.train)
    task = SpreadBatches(make_task(model, split.train, config.train), n, config.train.seed)
    result = Trainer(config.train, progress=False, echo=lambda line: None).fit(model, None, task=task)
    return result.train_seconds, task, model


def floor_seconds(task: SpreadBatches, n_items: int, dim: int, precision: str) -> tuple[float, float]:
    """(seconds, FLOP) of the output layer alone, forward and backward, over the same batches."""
    table = torch.nn.Parameter(torch.randn(n_items, dim) * 0.01)
    flop, start = 0.0, time.perf_counter()
    for batch in task.kept:
        states = torch.randn(batch.size, dim, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = states @ table.T
        loss = torch.nn.functional.cross_entropy(logits.float(), batch.targets)
        loss.backward()
        table.grad = None
        flop += 6.0 * batch.size * n_items * dim
    return time.perf_counter() - start, flop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from memrec.runs import prepare_split
    from memrec.training.config import load_config
    data_config = load_config("stamp", ROOT / "configs" / "stamp_yoochoose1_64.toml").data
    _, split = prepare_split(DATA, data_config, echo=lambda line: None)
    rows = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            load = os.getloadavg()[0]
            seconds, task, model = train_seconds(name, split, precision, args.batches)
            dim = model.item_embedding.embedding_dim
            floor, flop = floor_seconds(task, split.train.n_items, dim, precision)
            rows.append({"model": name, "precision": precision, "batches": len(task.kept),
                         "examples": task.n_examples, "train_seconds": seconds, "floor_seconds": floor,
                         "ratio": seconds / floor, "gflops_floor": flop / floor / 1e9, "dim": dim,
                         "epoch_estimate_s": seconds / len(task.kept) * task.epoch_batches,
                         "epoch_floor_s": floor / len(task.kept) * task.epoch_batches,
                         "load_average": [load, os.getloadavg()[0]]})
            print(json.dumps(rows[-1]), flush=True)
    earlier = json.loads((RESULTS / "training_floor.json").read_text())["rows"] \
        if (RESULTS / "training_floor.json").is_file() else []
    measured = {(r["model"], r["precision"]) for r in rows}       # a rerun replaces its rows only
    rows = [r for r in earlier if (r["model"], r["precision"]) not in measured] + rows
    rows.sort(key=lambda r: (MODELS.index(r["model"]), r["precision"] != "fp32"))
    record = {"rows": rows, "threads": args.threads, "items": split.train.n_items,
              "torch": torch.__version__, "platform": platform.platform()}
    (RESULTS / "training_floor.json").write_text(json.dumps(record, indent=1))
    lines = ["# Training against its matmul floor (STAMP, GRU4Rec; Yoochoose 1/64, shipped recipes)", "",
             f"`benchmarks/training_floor.py` (its docstring defines the floor): {args.batches} batches spread through "
             f"epoch 1, {args.threads} thread(s), {split.train.n_items:,} items; each row's training and floor back to back "
             "(a row's load average is the one it ran under).", "",
             "| model | precision | d | s (batches) | floor s | × floor | floor GFLOP/s | epoch est. s | epoch floor s | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['dim']} | {r['train_seconds']:.1f} | "
                     f"{r['floor_seconds']:.1f} | {r['ratio']:.2f} | {r['gflops_floor']:.1f} | "
                     f"{r['epoch_estimate_s']:.0f} | {r['epoch_floor_s']:.0f} | "
                     f"{r['load_average'][0]:.2f} → {r['load_average'][1]:.2f} |")
    lines += ["", f"torch {torch.__version__}, {platform.platform()}."]
    (RESULTS / "training_floor.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
