"""Latency and throughput of ``memrec serve`` (RUM-F, STAMP) on a 100,000-item catalogue, beside a
stateless re-encoding of the whole history per request.

    PYTHONPATH=src .venv/bin/python benchmarks/serving.py              # the run (2 idle cores)
    PYTHONPATH=src .venv/bin/python benchmarks/serving.py --quick      # smoke run: 5,000 items

Method
------
1. **Runs.** ``memrec.data.synthetic`` (100,000 items, 10,000 users, mean 20 events); per model
   one epoch of ``Recommender(name, dim=64).fit`` in a child limited to ``--train-budget`` s
   (data + epoch, default 200). Over budget, the model is saved **untrained** (``models.build`` +
   ``prepare``, ``checkpoint.save_model``; ``trained: false`` in the results): latency depends on
   the shapes, not the weights. Runs are cached under ``--work`` (``benchmarks/.work/serving``).
2. **Server.** ``memrec serve RUN --store sqlite:///RUN/state.db`` (a fresh store each time), a
   subprocess on a free loopback port, one model at a time; ``--server-threads`` caps its torch
   threads (and this process's, for step 5).
3. **Load.** C threads (``--clients``, default 1, 8, 64), one keep-alive ``http.client``
   connection each; warm-up requests (≥ 1 per connection, unmeasured), then all start together
   until ``requests`` are done or ``seconds`` pass; one measurement at a time. Reported: p50 / p99
   client-side latency, req/s (events/s), the 1-minute load average at start and end. Endpoints:
   ``healthz`` (the HTTP stack alone); ``recs``: ``GET /v1/users/U/recommendations?k=10`` for
   sampled training users with a stored state (each was sent one event first); ``recs_no_state``:
   the same for training users with none (the server encodes the training history per read);
   ``events``: one event per ``POST /v1/events`` (random training users and items; durable:
   SQLite ``synchronous=FULL``); ``events_batch100``: 100 such events per request.
4. **State size.** ``state_bytes`` of ``GET /v1/users/U/memory`` for the sampled users, read right
   after their one event.
5. **Stateless baseline**, for the same users and full histories (training + the served event):

   * STAMP over HTTP (``recs_stateless``): ``POST /v1/recommendations {"history": ..., "k": 10}``;
     the server encodes the whole history in one pass (``encode``), then scores. STAMP is
     anonymous, so it is the same answer as ``recs`` (``http_same_top10_share`` checks it): a
     fair comparison. STAMP's state *is* its window of clicks, so a stored state saves little
     here; the gap is widest for models whose state summarises a long history (GRU4Rec, KSR).
   * RUM-F needs a learned user vector: the server answers a user-less history by popularity, a
     different and cheaper answer, so RUM-F is not compared over HTTP. Both models are compared
     **in process** (before the server starts, one request at a time): ``LiveModel.recommend`` over
     an in-memory store holding the state vs ``model.score_all(make_query(user, full history))``
     + seen mask + top-10, the vectorised re-encoding a stateless server (LibRecommender-style)
     runs; no HTTP, no SQLite on either side. ``same_top10_share`` checks the answers agree.

   Ratios: stateless / stateful for p50 latency and for throughput.

Caveats
-------
The load generator shares the machine (on 2 cores it takes CPU from the server, most at 64
clients): throughput is a floor, latency a ceiling. The load average is the lagging 1-minute one
and counts this benchmark's own processes. One uvicorn worker unless ``--workers``. The server
computes up to 40 requests at once, so a read measurement is **skipped** (``skipped``, with the
reason) where min(C, 40) × the peak growth of one in-process read exceeds 60 % of MemAvailable;
the server's peak RSS is recorded, and a server that dies ends that model's run (``server_exit``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from common import child_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("rumf", "stamp")
#: mode → catalogue, measurement bounds (requests and seconds per measurement), sampled users
SIZES = {"full": dict(n_users=10_000, n_items=100_000, requests=2_000, seconds=20.0, sample=500, inproc=50),
         "quick": dict(n_users=500, n_items=5_000, requests=120, seconds=5.0, sample=40, inproc=60)}
TARGET_P99_MS, TARGET_CLIENTS, TARGET_EVENTS_PER_S = 20.0, 8, 1_000
BATCH = 100
#: requests the server computes at once (the thread pool FastAPI runs plain endpoints in)
SERVER_POOL = 40


# -- runs -------------------------------------------------------------------------------------------
def synth(size: dict):
    from memrec.data.synthetic import SynthConfig, generate
    return generate(SynthConfig(n_users=size["n_users"], n_items=size["n_items"], n_clusters=100,
                                mean_length=20.0, seed=0))


def child_train(spec: dict) -> dict:
    from memrec.recommender import Recommender
    data, start = synth(spec["size"]), time.perf_counter()
    rec = Recommender(spec["model"], dim=64, train={"epochs": 1, "patience": 0}).fit(data)
    rec.save(spec["run"])
    return {"trained": True, "train_seconds": time.perf_counter() - start, "interactions": len(data)}


def save_untrained(model: str, size: dict, run: Path) -> dict:
    from memrec.checkpoint import save_model
    from memrec.models import build
    from memrec.training.trainer import seed_everything
    seed_everything(0)
    data = synth(size)
    net = build(model, data.n_users, data.n_items, {"dim": 64})
    net.prepare(data)
    indptr, items = data.sequences()
    save_model(run, name=model, params={"dim": 64}, model=net, users=data.users, items=data.items,
               seen_indptr=indptr, seen_items=items)
    return {"trained": False, "interactions": len(data)}


def ensure_run(model: str, mode: str, work: Path, budget: float, threads: int | None) -> tuple[Path, dict]:
    """The cached run folder of ``model`` (trained within ``budget`` s, else untrained)."""
    run = work / f"{SIZES[mode]['n_items']}items-{SIZES[mode]['n_users']}users" / model
    info_path = run / "bench.json"
    if info_path.is_file():
        return run, json.loads(info_path.read_text())
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    spec = {"model": model, "size": SIZES[mode], "run": str(run)}
    try:
        if budget <= 0:
            raise subprocess.TimeoutExpired("training", budget)
        proc = subprocess.run([sys.executable, __file__, "--child-train", json.dumps(spec)], timeout=budget,
                              env=child_env(threads), stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"training {model} failed (exit {proc.returncode})")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        why = f"data + one epoch over the {budget:.0f} s budget"
        print(f"  {model}: {why}; saving it untrained", flush=True)
        info = {**save_untrained(model, SIZES[mode], run), "reason": why}
    info_path.write_text(json.dumps(info))
    return run, info


# -- server -----------------------------------------------------------------------------------------
def start_server(run: Path, store: Path, threads: int | None, workers: int) -> tuple[str, subprocess.Popen]:
    """``memrec serve`` over a fresh SQLite store on a free loopback port, once /healthz answers."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "memrec", "serve", str(run), "--host", "127.0.0.1", "--port", str(port),
           "--store", f"sqlite:///{store}", "--workers", str(workers)]
    with open(store.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(threads))
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return base, proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"server not healthy; see {store.with_suffix('.log')}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_mb(field: str, path: str = "/proc/self/status") -> float | None:
    """A ``kB`` field of /proc/PID/status (VmHWM: peak RSS) or /proc/meminfo, in MiB."""
    with contextlib.suppress(OSError, StopIteration), open(path) as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024
    return None


# -- load -------------------------------------------------------------------------------------------
def call(conn: http.client.HTTPConnection, request: tuple[str, str, bytes | None]) -> bytes:
    method, path, body = request
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()                                 # read to the end: the connection is reused
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
    return data


def load(base: str, make, clients: int, requests: int, seconds: float) -> dict:
    """C threads with a keep-alive connection each: unmeasured warm-up requests (8 in all, at
    least one per connection), then ``requests`` measured ones or as many as ``seconds`` allow."""
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors: list[str] = []
    lock, tickets, clock = threading.Lock(), iter(range(requests)), {}
    gate = threading.Barrier(clients, action=lambda: clock.update(
        start=time.perf_counter(), load=os.getloadavg()[0]))       # the measured part starts

    def worker(seed: int) -> None:
        rng, mine = random.Random(seed), []
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        for _ in range(max(1, 8 // clients)):
            try:
                call(conn, make(rng))
            except Exception as e:  # noqa: BLE001 (counted; the barrier must not hang)
                errors.append(repr(e))
        gate.wait()
        while time.perf_counter() < clock["start"] + seconds:
            with lock:
                if next(tickets, None) is None:
                    break
            request, t0 = make(rng), time.perf_counter()
            try:
                call(conn, request)
                mine.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                conn.close()
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - clock["start"]
    ms = np.array(latencies) * 1e3
    return {"clients": clients, "requests": len(ms), "errors": len(errors), "error_sample": errors[:3],
            "seconds": wall, "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None, "rps": len(ms) / wall,
            "loadavg_1min": [clock["load"], os.getloadavg()[0]]}


def json_body(value) -> bytes:
    return json.dumps(value).encode()


def request_makers(users: list[str], unstored: list[str], all_users: list[str], items: list[str],
                   histories: dict[str, list[str]], stateless: bool) -> dict:
    """endpoint → (function rng → request, events per request)."""
    def event(rng):
        return {"user": rng.choice(all_users), "item": rng.choice(items)}
    makers = {
        "healthz": (lambda rng: ("GET", "/healthz", None), 0),
        "recs": (lambda rng: ("GET", f"/v1/users/{rng.choice(users)}/recommendations?k=10", None), 0),
        "recs_no_state": (lambda rng: ("GET", f"/v1/users/{rng.choice(unstored)}/recommendations?k=10", None), 0),
    }
    if stateless:
        makers["recs_stateless"] = (lambda rng: ("POST", "/v1/recommendations", json_body(
            {"history": histories[rng.choice(users)], "k": 10})), 0)
    makers["events"] = (lambda rng: ("POST", "/v1/events", json_body(event(rng))), 1)
    makers["events_batch100"] = (lambda rng: ("POST", "/v1/events", json_body(
        {"events": [event(rng) for _ in range(BATCH)]})), BATCH)
    return makers


# -- one model --------------------------------------------------------------------------------------
def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def in_process(saved, users: list[str], seeded: dict[str, str], repeats: int) -> dict:
    """Stateful ``LiveModel.recommend`` vs stateless ``score_all`` on the full history, one
    request at a time (see the module docstring)."""
    import torch
    from memrec.models.capabilities import make_query
    from memrec.serving.live import LiveModel
    from memrec.serving.store import Event, MemoryStore
    live = LiveModel(saved, MemoryStore(), "bench")
    for u in users:                     # one by one: a batch pads STAMP's windows (see seed_states)
        live.observe([Event(u, seeded[u])])
    model, indptr, seen = live.model, saved.seen_indptr, saved.seen_items
    full = {u: (ix, np.append(seen[indptr[ix]:indptr[ix + 1]], int(live.item_indices([seeded[u]])[0])))
            for u, ix in zip(users, live.user_indices(users))}

    @torch.no_grad()
    def stateless(u: str) -> list[int]:
        index, history = full[u]
        query = make_query(model, np.array([index]), np.array([0, len(history)]), history, rows=[0])
        scores = model.score_all(query)[0].float().clone()
        scores[torch.as_tensor(history)] = float("-inf")
        return scores.topk(10).indices.tolist()

    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")                                 # resets VmHWM to the current RSS
    before = proc_mb("VmRSS")
    live.recommend(users[0], 10)                      # what one read allocates (RUM-F: a lot)
    request_mb = max(0.0, proc_mb("VmHWM") - before) if before else 0.0
    paths = {"stateful": lambda u: live.recommend(u, 10), "stateless": stateless}
    order = (users * (repeats // len(users) + 1))[:repeats]
    times: dict[str, list[float]] = {name: [] for name in paths}
    for n, u in enumerate(order[:5] + order):     # interleaved: background load hits both alike
        for name, fn in paths.items():
            took = timed(fn, u)
            if n >= 5:                                # the first 5: warm-up
                times[name].append(took)
    out = {name: {"p50_ms": float(np.percentile(t, 50)) * 1e3, "p99_ms": float(np.percentile(t, 99)) * 1e3,
                  "rps": len(t) / sum(t), "requests": len(t)} for name, t in times.items()}
    same = [live.recommend(u, 10).items == [str(i) for i in saved.items.to_raw(np.array(stateless(u)))]
            for u in users[:20]]
    return {**out, "same_top10_share": float(np.mean(same)), "first_read_peak_growth_mb": request_mb}


def bench_model(model: str, run: Path, info: dict, args, size: dict) -> dict:
    from memrec.checkpoint import load_model
    rng, saved = random.Random(0), load_model(run)
    all_users = [str(u) for u in saved.users.to_json()]
    picked = rng.sample(all_users, min(len(all_users), 2 * size["sample"]))
    users, unstored = picked[:size["sample"]], picked[size["sample"]:]
    items = [str(i) for i in saved.items.to_json()]
    seeded = {u: rng.choice(items) for u in users}
    print(f"  {model}: in-process comparison", flush=True)
    record = {"model": model, **info, "in_process": in_process(saved, users, seeded, size["inproc"])}
    indptr, seen = saved.seen_indptr, saved.seen_items
    histories = {u: [str(i) for i in saved.items.to_raw(seen[indptr[ix]:indptr[ix + 1]])] + [seeded[u]]
                 for u, ix in zip(users, saved.users.to_index(users, what="user"))}
    base, proc = start_server(run, run / "state.db", args.server_threads, args.workers)
    try:
        record.update(seed_states(base, users, seeded, histories if model == "stamp" else None))
        makers = request_makers(users, unstored, all_users, items, histories, stateless=(model == "stamp"))
        run_loads(record, model, base, proc, makers, args, size)
        record["server_peak_rss_mb"] = proc_mb("VmHWM", f"/proc/{proc.pid}/status")
    finally:
        stop_server(proc)
    return record


def run_loads(record: dict, model: str, base: str, proc, makers: dict, args, size: dict) -> None:
    """Every endpoint at every concurrency, one at a time, into ``record["rows"]``; reads that
    would not fit in memory are skipped (see Caveats)."""
    record["rows"], record["skipped"] = [], []
    per_read = record["in_process"]["first_read_peak_growth_mb"]
    for (endpoint, (make, events)), clients in itertools.product(makers.items(), args.clients):
        need = min(clients, SERVER_POOL) * per_read
        if endpoint.startswith("recs") and need > 0.6 * (proc_mb("MemAvailable", "/proc/meminfo") or float("inf")):
            record["skipped"].append(f"{endpoint} at {clients} clients: ~{need / 1024:.0f} GiB of concurrent "
                                     f"reads ({per_read:.0f} MiB each), over 60 % of the available memory")
            print(f"  {model} {endpoint:16s} C={clients:<3d} skipped: {record['skipped'][-1]}", flush=True)
            continue
        row = {"endpoint": endpoint, **load(base, make, clients, size["requests"], size["seconds"])}
        row["events_per_s"] = row["rps"] * events if events else None
        record["rows"].append(row)
        print(f"  {model} {endpoint:16s} C={clients:<3d} p50 {num(row['p50_ms']):>8s} ms  p99 "
              f"{num(row['p99_ms']):>8s} ms  {row['rps']:8.1f} req/s  load {row['loadavg_1min'][0]:.2f}"
              f"→{row['loadavg_1min'][1]:.2f}" + (f"  errors {row['errors']}" if row["errors"] else ""), flush=True)
        if proc.poll() is not None:              # e.g. killed for memory: the rest would only fail
            record["server_exit"] = proc.returncode
            print(f"  the server exited ({proc.returncode}); see the .log beside its store", flush=True)
            return


def seed_states(base: str, users: list[str], seeded: dict[str, str], histories: dict | None) -> dict:
    """Send each sampled user one event, alone (in a batch, a STAMP window is stored padded to
    the batch's longest history); read ``state_bytes`` of each; with ``histories``, check that
    the stateless answer equals the stateful one for a few users."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    for u in users:
        call(conn, ("POST", "/v1/events", json_body({"user": u, "item": seeded[u]})))
    sizes = [json.loads(call(conn, ("GET", f"/v1/users/{u}/memory", None)))["state_bytes"] for u in users]
    out = {"state_bytes": {"mean": float(np.mean(sizes)), "max": int(max(sizes)), "n": len(sizes)}}
    if histories:
        def top(request):
            return [i["item"] for i in json.loads(call(conn, request))["items"]]
        out["http_same_top10_share"] = float(np.mean([
            top(("GET", f"/v1/users/{u}/recommendations?k=10", None))
            == top(("POST", "/v1/recommendations", json_body({"history": histories[u], "k": 10})))
            for u in users[:10]]))
    conn.close()
    return out


# -- report -----------------------------------------------------------------------------------------
def find(record: dict, endpoint: str, clients: int) -> dict | None:
    return next((r for r in record["rows"] if r["endpoint"] == endpoint and r["clients"] == clients), None)


def verdicts(record: dict) -> dict:
    recs = find(record, "recs", TARGET_CLIENTS)
    best = {e: max((r["events_per_s"] for r in record["rows"] if r["endpoint"] == e), default=0.0)
            for e in ("events", "events_batch100")}
    p99 = recs and recs["p99_ms"]
    return {"p99_recs_at_8_clients_ms": p99, "p99_under_20ms_at_8_clients": p99 is not None and p99 < TARGET_P99_MS,
            "best_single_events_per_s": best["events"], "best_batched_events_per_s": best["events_batch100"],
            "1000_durable_events_per_s_single": best["events"] >= TARGET_EVENTS_PER_S,
            "1000_durable_events_per_s_batched": best["events_batch100"] >= TARGET_EVENTS_PER_S}


def comparisons(record: dict) -> list[dict]:
    """Stateless vs stateful: in process, and (STAMP) over HTTP at each concurrency."""
    pairs = [("in-process", 1, record["in_process"]["stateful"], record["in_process"]["stateless"])]
    pairs += [("HTTP", c, find(record, "recs", c), find(record, "recs_stateless", c))
              for c in sorted({r["clients"] for r in record["rows"]})]
    return [{"path": path, "clients": c, "stateful_p50_ms": a["p50_ms"], "stateless_p50_ms": b["p50_ms"],
             "stateful_rps": a["rps"], "stateless_rps": b["rps"],
             "p50_stateless_over_stateful": b["p50_ms"] / a["p50_ms"],
             "rps_stateless_over_stateful": b["rps"] / a["rps"]}
            for path, c, a, b in pairs if a and b and a["p50_ms"] and b["p50_ms"] and a["rps"]]


def num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
           ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def markdown(results: dict) -> str:
    cat, models = results["catalogue"], results["models"]
    lines = [f"# Serving ({results['mode']}: {cat['n_items']:,} items, {cat['n_users']:,} users)", ""]
    lines += table(["model", "endpoint", "clients", "p50 ms", "p99 ms", "req/s", "events/s", "load 1-min"],
                   [[m["model"], r["endpoint"], r["clients"], num(r["p50_ms"]), num(r["p99_ms"]), num(r["rps"], 1),
                     num(r["events_per_s"], 0), f"{r['loadavg_1min'][0]:.2f}→{r['loadavg_1min'][1]:.2f}"]
                    for m in models for r in m["rows"]])
    lines += table(["model", "path", "clients", "p50 stateful → stateless ms", "p50 ratio", "req/s ratio"],
                   [[m["model"], c["path"], c["clients"], f"{num(c['stateful_p50_ms'])} → "
                     f"{num(c['stateless_p50_ms'])}", num(c["p50_stateless_over_stateful"]),
                     num(c["rps_stateless_over_stateful"])]
                    for m in models for c in m["comparisons"]])
    lines += table(["model", "trained", "state bytes mean / max", "p99 recs @8 clients < 20 ms",
                    "≥ 1,000 durable events/s: single / batch of 100"],
                   [[m["model"], m["trained"], f"{m['state_bytes']['mean']:,.0f} / {m['state_bytes']['max']:,}",
                     f"{v['p99_under_20ms_at_8_clients']} ({num(v['p99_recs_at_8_clients_ms'], 1)} ms)",
                     f"{v['1000_durable_events_per_s_single']} ({num(v['best_single_events_per_s'], 0)}) / "
                     f"{v['1000_durable_events_per_s_batched']} ({num(v['best_batched_events_per_s'], 0)})"]
                    for m in models for v in [m["targets"]]])
    lines += [f"Skipped ({m['model']}): {note}" for m in models for note in m.get("skipped", [])]
    return "\n".join(lines) + "\n"


def machine(args) -> dict:
    import torch
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads_in_process": torch.get_num_threads(),
            "server_threads": args.server_threads or "torch default (one per core)", "workers": args.workers,
            "platform": platform.platform(), "date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%MZ}"}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child-train":
        print(json.dumps(child_train(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 items, few requests (a smoke run)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--clients", default="1,8,64", help="comma list of concurrency levels")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "serving")
    parser.add_argument("--train-budget", type=float, default=200.0,
                        help="seconds for generating the data and one epoch (0: untrained)")
    parser.add_argument("--server-threads", type=int, default=None, help="torch threads in the server")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    mode = "quick" if args.quick else "full"
    if args.server_threads:             # the in-process comparison runs with the server's threads
        import torch
        torch.set_num_threads(args.server_threads)
    size = SIZES[mode]
    results = {"mode": mode, "catalogue": {k: size[k] for k in ("n_users", "n_items")},
               "bounds": {k: size[k] for k in ("requests", "seconds", "sample", "inproc")},
               "machine": machine(args), "targets": {"p99_ms_top10_at_8_clients": TARGET_P99_MS,
                                                     "durable_events_per_s": TARGET_EVENTS_PER_S},
               "models": []}
    for model in args.models.split(","):
        print(f"{dt.datetime.now():%H:%M:%S} {model} ({mode})", flush=True)
        run, info = ensure_run(model, mode, args.work, args.train_budget, args.server_threads)
        record = bench_model(model, run, info, args, size)
        record.update(targets=verdicts(record), comparisons=comparisons(record))
        results["models"].append(record)
    from memrec.fileio import atomic_write_bytes, atomic_write_json
    out = RESULTS / ("serving" if mode == "full" else "tmp/serving_quick")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(f"{out}.json"), results)
    atomic_write_bytes(Path(f"{out}.md"), markdown(results).encode())
    print(markdown(results))
    print(f"wrote {out}.json, {out}.md")


if __name__ == "__main__":
    main()
