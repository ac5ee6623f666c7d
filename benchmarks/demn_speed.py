"""DEMN's training throughput on ml-100k (docs/models/demn.md, "Training speed").

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demn_speed.py [--batches 30]
        [--profile] [--set model.write=gated ...]

Splits ml-100k as the shipped config says (leave-one-out, split seed 0), builds DEMN from
``configs/demn_ml-100k.toml`` and times ``--batches`` batches (default: a whole epoch) of the real training step (the
``NextItemTask`` loss, backward, Adam step) after two warm-up batches, one thread. Prints
training examples (prediction targets) per second and the 1-minute load average before and
after, since the machine may be shared. ``--profile`` prints cProfile's top functions instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from pathlib import Path

import torch

from memrec.models import build
from memrec.runs import prepare_split
from memrec.training.config import load_config
from memrec.training.tasks import make_task
from memrec.training.trainer import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEMREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=0, help="0: one whole epoch")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config("demn", ROOT / "configs" / "demn_ml-100k.toml", args.overrides)
    _, split = prepare_split(DATA / "ml-100k", config.data, echo=lambda line: None)
    torch.manual_seed(0)
    model = build("demn", split.train.n_users, split.train.n_items, config.model_params)
    model.prepare(split.train)
    model.train()
    task = make_task(model, split.train, config.train)
    optimizer = make_optimizer(config.train, model.parameter_groups(config.train.weight_decay))
    batches = list(task.batches(torch.Generator().manual_seed(0)))
    timed = batches[2:2 + args.batches] if args.batches else batches
    batches = iter(batches[:2] + timed)

    def step() -> int:
        batch = next(batches)
        optimizer.zero_grad()
        task.loss(model, batch).backward()
        optimizer.step()
        return int(batch.targets.numel())

    for _ in range(2):
        step()
    load_before = os.getloadavg()[0]
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    start, examples = time.perf_counter(), 0
    for _ in range(len(timed)):
        examples += step()
    seconds = time.perf_counter() - start
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(json.dumps({"examples_per_s": round(examples / seconds, 1), "examples": examples,
                      "seconds": round(seconds, 2), "batches": len(timed),
                      "loadavg_1min": [load_before, os.getloadavg()[0]], "overrides": args.overrides}))


if __name__ == "__main__":
    main()
