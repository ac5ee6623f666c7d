"""Distributed data-parallel training (``memrec.distributed``): 2 gloo ranks on this machine,
started by torchrun itself, train like one process with the same global batch; sharded
evaluation is exact; a killed rank fails the job quickly with one line naming it; a checkpoint
resumes on another world size; two "nodes" meet on loopback.

The tolerances: with plain SGD every weight of every model matches one process to 1e-5 after
2 epochs (the two runs add the same gradients in another order: float32 rounding). With Adam
the same holds except for parameters whose exact gradient is zero — an attention key bias (a
constant shift of every logit a softmax ignores), DMN's key of its single event type: there
Adam normalises rounding noise into steps of size lr in *both* runs, so those weights differ,
and their effect on every score is nil; the Adam test compares the full-ranking scores (1e-4).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from memrec import distributed
from memrec.errors import ConfigError
from memrec.evaluation import Evaluator
from memrec.models.base import Query
from memrec.training.tasks import PairBatch, PurchaseBatch, SequenceBatch
from memrec.training.trainer import check_data_parallel

from .distributed_cases import fit, split

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
#: memory models (CMN, RUM, MARS, DMN, KSR, STAMP) and the baselines of every task kind
MODELS = ["bprmf", "gmf", "cmn", "fpmc", "gru4rec", "sasrec", "rumi", "rumf", "stamp", "stmp",
          "mars", "dmn", "ksr", "ease", "pop"]
TIMEOUT = 300


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _torchrun(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)


def _ranks(out: Path, epochs: int, models, optimizer="adam", **env) -> dict[str, dict]:
    """Train ``models`` on 2 ranks under torchrun; rank 0's weights and metrics per model."""
    out.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        logs = out / f"logs{attempt}"    # each rank's stderr kept whole: a failure names its cause
        done = _torchrun("--standalone", "--nproc-per-node", "2", "--log-dir", str(logs), "--tee", "2",
                         str(WORKER), str(out), str(epochs), *models, OPTIMIZER=optimizer, **env)
        if done.returncode == 0 or not _aborted_in_cxx(logs) or attempt == 2:
            break
        # Seen twice in ~40 runs, never reproduced alone: a rank dies in torch's C++ ("terminate
        # called without an active exception", SIGABRT), not a Python error or a wrong result.
        # One more try, loudly, so a real regression (which fails both) still fails the test.
        warnings.warn("a rank aborted in C++; retrying once:\n" + _rank_logs(logs))
    assert done.returncode == 0, _rank_logs(logs) + done.stderr[-1500:]
    return {name: torch.load(out / f"{name}.pt", weights_only=False) for name in models}


def _aborted_in_cxx(logs: Path) -> bool:
    return "terminate called without an active exception" in _rank_logs(logs)


def _rank_logs(logs: Path) -> str:
    return "".join(f"--- {path.relative_to(logs)}\n{path.read_text(errors='replace')[-2500:]}\n"
                   for path in sorted(logs.rglob("stderr.log")))


@pytest.fixture(scope="module")
def data():
    return split()


@pytest.fixture(scope="module")
def adam_ranks(tmp_path_factory):
    return _ranks(tmp_path_factory.mktemp("adam"), 2, MODELS)


@pytest.fixture(scope="module")
def sgd_ranks(tmp_path_factory):
    return _ranks(tmp_path_factory.mktemp("sgd"), 2, MODELS, optimizer="sgd")


def _max_weight_difference(expected: dict, got: dict) -> float:
    assert expected.keys() == got.keys()
    return max([float((expected[k].double() - got[k].double()).abs().max())
                for k in expected if expected[k].is_floating_point() and expected[k].numel()] or [0.0])


def _all_scores(model, data) -> torch.Tensor:
    users = np.arange(data.train.n_users)
    indptr, items = data.train.sequences()
    from memrec.models.capabilities import make_query
    with torch.no_grad():
        return model.eval().score_all(make_query(model, users, indptr, items)).float()


# -- 2 ranks train like one process ------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_two_ranks_with_sgd_end_with_one_processs_weights(name, data, sgd_ranks):
    one = fit(name, data, 2, optimizer="sgd")
    ranks = sgd_ranks[name]
    assert ranks["world_size"] == 2
    assert _max_weight_difference(one.model_.state_dict(), ranks["state"]) < 1e-5
    assert ranks["best_epoch"] == one.result_.best_epoch


@pytest.mark.parametrize("name", MODELS)
def test_two_ranks_with_adam_score_like_one_process(name, data, adam_ranks):
    one = fit(name, data, 2)
    ranks = adam_ranks[name]
    expected = _all_scores(one.model_, data)
    one.model_.load_state_dict(ranks["state"])
    got = _all_scores(one.model_, data)
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got))
    assert (expected[finite] - got[finite]).abs().max() < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_sharded_evaluation_equals_one_process_on_the_same_weights(name, data, adam_ranks):
    """Per-rank sums and counts are added, not ratios averaged: to 1e-9 (float64 rounding)."""
    model = fit(name, data, 1).model_
    model.load_state_dict(adam_ranks[name]["state"])
    single = Evaluator(data, "test").evaluate(model)
    sharded = adam_ranks[name]["metrics"]
    assert single.keys() == sharded.keys()
    for protocol, values in single.items():
        assert values.keys() == sharded[protocol].keys()
        for metric, value in values.items():
            assert abs(value - sharded[protocol][metric]) < 1e-9, (protocol, metric)


def test_a_checkpoint_of_two_ranks_resumes_in_one_process(data, tmp_path):
    """World size 2 → 1: the checkpoint holds the generator every rank drew the global batches
    from, so the resumed run continues the same sequence of batches."""
    names = ["bprmf", "rumf"]
    _ranks(tmp_path / "out", 2, names, optimizer="sgd", RUN_DIR=str(tmp_path / "runs"))
    for name in names:
        fit(name, data, 3, tmp_path / "straight" / name, optimizer="sgd")
        resumed = fit(name, data, 3, tmp_path / "runs" / name, resume=True, optimizer="sgd")
        assert [r["epoch"] for r in resumed.result_.history] == [1, 2, 3]
        # the last epoch's weights (the kept best epoch may differ: validation metrics that tie
        # in exact arithmetic can break either way under rounding)
        last = [torch.load(tmp_path / run / name / "checkpoint.pt", weights_only=False)["model"]
                for run in ("straight", "runs")]
        assert _max_weight_difference(*last) < 1e-5


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    from memrec.data.synthetic import SynthConfig, generate, write_csv
    write_csv(generate(SynthConfig(n_users=60, n_items=300, mean_length=12, seed=5)), path)
    return path


def _memrec(*args, timeout=TIMEOUT, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memrec", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


TRAIN_ARGS = ["--epochs", "2", "--set", "train.batch_size=64", "--set", "model.dim=8",
              "--set", "train.optimizer=\"sgd\"", "--set", "train.lr=0.05"]


def _results(out: Path) -> dict:
    import json
    return json.loads((out / "results.json").read_text())


def test_nproc_and_torchrun_train_bprmf_like_one_process(dataset, tmp_path):
    one = _memrec("train", "bprmf", "--data", str(dataset), "--out", str(tmp_path / "one"), *TRAIN_ARGS)
    assert one.returncode == 0, one.stderr
    two = _memrec("train", "bprmf", "--data", str(dataset), "--out", str(tmp_path / "two"),
                  "--nproc", "2", *TRAIN_ARGS)
    assert two.returncode == 0, two.stderr
    run = _torchrun("--standalone", "--nproc-per-node", "2", "-m", "memrec", "train", "bprmf",
                    "--data", str(dataset), "--out", str(tmp_path / "torchrun"), *TRAIN_ARGS)
    assert run.returncode == 0, run.stderr
    expected = _results(tmp_path / "one")
    assert expected["world_size"] == 1
    for folder, output in (("two", two.stdout), ("torchrun", run.stdout)):
        got = _results(tmp_path / folder)
        assert got["world_size"] == 2
        for protocol, values in expected["metrics"].items():
            for metric, value in values.items():
                assert got["metrics"][protocol][metric] == pytest.approx(value, abs=1e-6), (folder, metric)
        assert output.count("saved to") == 1                # rank 0 alone prints the results
        weights = [torch.load(tmp_path / f / "model.pt", weights_only=False)["state"]
                   for f in ("one", folder)]
        assert _max_weight_difference(*weights) < 1e-5
    # rank 0 alone wrote the log: one line per epoch
    assert len((tmp_path / "two" / "log.jsonl").read_text().splitlines()) == 2


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rank_process(launcher: int, rank: int) -> int | None:
    for pid in _children(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


def test_a_killed_rank_fails_the_job_quickly_with_one_line_naming_it(dataset, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "memrec", "train", "bprmf", "--data", str(dataset),
                                "--out", str(tmp_path / "run"), "--nproc", "2", "--epochs", "100000",
                                "--set", "train.patience=0", "--set", "train.batch_size=8"],
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _wait_for(tmp_path / "run" / "checkpoint.pt", process)     # training is under way
        victim = _rank_process(process.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        assert time.monotonic() - killed < 30
    finally:
        process.kill()
    assert process.returncode == 1
    lines = [line for line in stderr.splitlines() if line.startswith("memrec:")]
    assert lines == ["memrec: error: rank 1 was killed by SIGKILL; the other ranks were stopped"]


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)


def test_ctrl_c_stops_every_rank_with_one_line_and_the_run_resumes_on_one_process(dataset, tmp_path):
    args = ["train", "bprmf", "--data", str(dataset), "--out", str(tmp_path / "run"), "--epochs", "100000",
            "--set", "train.patience=0", "--set", "train.batch_size=8"]
    process = subprocess.Popen([sys.executable, "-m", "memrec", *args, "--nproc", "2"], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               start_new_session=True)        # Ctrl-C reaches the whole group
    try:
        _wait_for(tmp_path / "run" / "checkpoint.pt", process)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    lines = [line for line in stderr.splitlines() if line.startswith("memrec:")]
    assert len(lines) == 1 and lines[0].startswith("memrec: interrupted; continue the run with: memrec train")
    assert "--nproc 2" in lines[0] and lines[0].endswith("--resume")
    # the recorded configuration is the user's (train.device "auto"), so the same options resume
    # it, here on one process
    resumed = subprocess.Popen([sys.executable, "-m", "memrec", *args, "--resume"], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "run" / "log.jsonl"
        epochs = len(log.read_text().splitlines())
        while len(log.read_text().splitlines()) <= epochs + 1:      # it trains on
            assert resumed.poll() is None and time.monotonic() < deadline, resumed.communicate()
            time.sleep(0.2)
    finally:
        resumed.kill()
        _, stderr = resumed.communicate()
    assert "resuming after epoch" in stderr


def test_an_error_on_every_rank_is_one_line_from_rank_0(tmp_path, dataset):
    done = _memrec("train", "nmrn", "--data", str(dataset), "--out", str(tmp_path / "run"),
                   "--nproc", "2", "--epochs", "1")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("memrec: error: NMRN learns from the time-ordered stream")


def test_nproc_refuses_an_existing_out_before_starting_ranks(tmp_path, dataset):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    done = _memrec("train", "bprmf", "--data", str(dataset), "--out", str(tmp_path / "run"), "--nproc", "2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"memrec: error: {tmp_path / 'run'} already exists and is not empty; choose another --out, "
        "or --resume to continue that run"]
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_on_loopback(dataset, tmp_path):
    """``torchrun --nnodes 2 --rdzv-backend c10d``: two launchers (the "nodes"), one rank each."""
    endpoint = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "memrec-test",
               "-m", "memrec", "train", "bprmf", "--data", str(dataset), "--out", str(tmp_path / "run"),
               *TRAIN_ARGS]
    nodes = [subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(2)]
    outputs = [node.communicate(timeout=TIMEOUT) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert _results(tmp_path / "run")["world_size"] == 2
    assert sum(out.count("saved to") for out, _ in outputs) == 1


# -- the pieces ----------------------------------------------------------------------------------
def test_world_shards_requests_without_gaps_or_duplicates():
    for n in (0, 1, 5, 1000):
        shares = [distributed.World(rank, 3).shard(n) for rank in range(3)]
        assert np.array_equal(np.concatenate(shares), np.arange(n))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_shard_batch_splits_rows_by_examples_and_scales_to_the_global_mean():
    history = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0], [7, 8, 9, 0], [1, 3, 0, 0]])
    mask = history > 0
    targets = history[:, 1:][mask[:, 1:]]                     # 3 + 1 + 2 + 1 = 7 targets
    negatives = torch.arange(7)[:, None].repeat(1, 2)
    batch = SequenceBatch(history, mask, targets, torch.arange(4), negatives)
    shares = [distributed.shard_batch(batch, distributed.World(rank, 2)) for rank in range(2)]
    (first, a), (second, b) = shares
    # 3 targets in row 0, then rows 1-3 hold 4: the split that balances examples best
    assert first.history.tolist() == history[:1].tolist() and second.history.tolist() == history[1:].tolist()
    assert first.targets.tolist() == [2, 3, 4] and second.targets.tolist() == [6, 8, 9, 3]
    assert first.negatives[:, 0].tolist() == [0, 1, 2] and second.negatives[:, 0].tolist() == [3, 4, 5, 6]
    # the ranks' scaled means average to the global mean: a·n₀/… — factors are n_r · W / N
    assert a == pytest.approx(3 * 2 / 7) and b == pytest.approx(4 * 2 / 7)
    purchase = PurchaseBatch(history, mask, torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0],
                                                          [1, 0, 0, 0]], dtype=torch.bool),
                             torch.tensor([30, 40, 80, 30]), torch.arange(4))
    local, scale = distributed.shard_batch(purchase, distributed.World(1, 2))
    assert local.targets.tolist() == [80, 30] and scale == pytest.approx(1.0)


def test_a_batch_with_fewer_rows_than_ranks_runs_whole_everywhere():
    batch = PairBatch(torch.tensor([4]), torch.tensor([2]), torch.tensor([[1]]))
    for rank in range(3):
        local, scale = distributed.shard_batch(batch, distributed.World(rank, 3))
        assert local is batch and scale == 1.0


def test_every_rank_keeps_a_row_when_one_row_holds_most_examples():
    history = torch.tensor([[1, 2, 3, 4, 5, 6], [5, 6, 0, 0, 0, 0], [7, 8, 0, 0, 0, 0]])
    mask = history > 0
    batch = SequenceBatch(history, mask, history[:, 1:][mask[:, 1:]])
    sizes = [len(distributed.shard_batch(batch, distributed.World(r, 3))[0].history) for r in range(3)]
    assert sizes == [1, 1, 1]


def test_stream_models_and_sparse_gradients_on_nccl_are_refused_with_a_reason():
    from memrec.models import build
    world = distributed.World(0, 2)
    with pytest.raises(ConfigError, match="time-ordered stream"):
        check_data_parallel(build("nmrn", 5, 5, {}), world, torch.device("cpu"))
    sparse = build("bprmf", 5, 5, {})
    sparse.user_embedding.sparse = True
    check_data_parallel(sparse, world, torch.device("cpu"))       # gloo reduces them
    with pytest.raises(ConfigError, match="NCCL cannot reduce"):
        check_data_parallel(sparse, world, torch.device("cuda"))
    check_data_parallel(sparse, distributed.World(), torch.device("cuda"))   # one process


def test_without_torchrun_the_world_is_one_process():
    assert distributed.current() == distributed.World(0, 1, 0)
    assert not distributed.launched_by_torchrun()
