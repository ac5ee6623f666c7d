"""DEMN's cost per event and state bytes per user (docs/models/demn.md, "Cost").

    PYTHONPATH=src .venv/bin/python benchmarks/demn_cost.py [--dim 64] [--threads 1]

On an untrained model (cost depends on shapes, not weights) over synthetic ML-100K-sized data
(943 users, 1,682 items, ~100 events a user): FLOPs counted by ``torch.utils.flop_counter`` (matrix
products only: one MAC = 2 FLOPs) for one event's write (``update``, B = 1), scoring C candidates
from a state, and full ranking; wall-clock per event for serving (B = 1) and batched (B = 256)
writes; the bytes of one user's serialised state after H and more events. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from memrec.data.synthetic import SynthConfig, generate
from memrec.models import build


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def per_call_seconds(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = generate(SynthConfig(n_users=943, n_items=1682, mean_length=100, seed=0))
    model = build("demn", data.n_users, data.n_items, {"dim": args.dim}).eval().requires_grad_(False)
    model.prepare(data)
    one, item = torch.tensor([0]), torch.tensor([5])
    history = torch.randint(0, data.n_items, (1, 200))
    state = model.encode(one, history, torch.ones_like(history, dtype=torch.bool))
    candidates = torch.randint(0, data.n_items, (1, 5))
    model.score_state(state, one)                       # builds the cached item table
    batch_users = torch.arange(256)
    batch_state = model.encode(batch_users, history.expand(256, -1), torch.ones(256, 200, dtype=torch.bool))
    items = torch.randint(0, data.n_items, (256,))
    sizes = {}
    for n in (1, 10, 50, 200):
        s = model.encode(one, history[:, :n], torch.ones(1, n, dtype=torch.bool))
        sizes[n] = len(s.to_bytes())
    report = {
        "dim": args.dim, "slots": model.slot_keys.shape[0], "visitors": model.visitors,
        "recent_items": model.recent_items, "history": model.history, "top_r": model.top_r,
        "threads": args.threads,
        "write_macs_per_event": flops(lambda: model.update(state, item)) // 2,
        "score_macs_per_candidate": flops(lambda: model.score_state(state, one, candidates)) // 2 // 5,
        "full_ranking_macs_per_user": flops(lambda: model.score_state(state, one)) // 2,
        "write_ms_per_event_serving": 1e3 * per_call_seconds(lambda: model.update(state, item), 50),
        "write_us_per_event_batch256": 1e6 * per_call_seconds(lambda: model.update(batch_state, items), 10) / 256,
        "full_ranking_ms_per_user_serving": 1e3 * per_call_seconds(lambda: model.score_state(state, one), 20),
        "state_bytes_after_n_events": sizes,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
