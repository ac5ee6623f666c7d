"""Data-parallel training on PyTorch's own engine: torchrun, DistributedDataParallel, gloo/NCCL.

``torchrun --nproc-per-node N -m memrec train ...`` starts N ranks; ``memrec train ... --nproc N``
starts them itself through torchrun's launcher (:func:`launch`). Every rank reads the data and
builds the same model; the ranks then differ only in the rows of each batch they compute.

**One process's training, exactly.** Every rank draws the *global* batch (order, negatives) from
the trainer's generator, seeded alike on all ranks, and keeps its shard of the rows
(:func:`shard_batch`: contiguous, balanced by training examples). Its loss is scaled by
``local examples × world / global examples``, so DDP's gradient average is the gradient of the
global batch's mean loss: the weights follow the single-process run up to floating-point
summation order, and a checkpoint can resume on another world size (the generator's state is
the same everywhere). This replaces ``DistributedSampler`` + ``set_epoch``: a sampler that shards
the epoch gives each rank other batches than one process would see. The price is that each rank
draws the whole batch's negatives (cheap next to the model's forward and backward).

Evaluation is sharded by request (:meth:`World.shard`) and exact: per-rank metric *sums and
counts* are all-reduced in float64 (:func:`all_reduce_sum`), never averaged ratios.
Rank 0 alone writes the run folder; early stopping follows rank 0's decision (:meth:`World.agree`).
What cannot train data-parallel is refused by :func:`memrec.training.trainer.check_data_parallel`.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError

#: how long a collective waits for a silent rank before the job fails (a dead rank on another node;
#: on one node torchrun's agent notices a dead worker within a second and stops the others)
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("MEMREC_DIST_TIMEOUT_MIN", "10")))


#: set in the ranks ``memrec train --nproc`` starts
LAUNCHED_BY_NPROC = "MEMREC_LAUNCHED_BY_NPROC"


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> np.ndarray:
        """This rank's contiguous share of ``n`` requests (sizes differ by at most one; no
        padding, so no request is counted twice)."""
        return np.array_split(np.arange(n), self.size)[self.rank]

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (a decision taken once: early stopping's score)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_ALONE = [False]


@contextlib.contextmanager
def alone():
    """Code that one rank runs by itself while the others wait (rank 0 training KSR's TransE
    vectors before every rank reads them): inside, :func:`current` is one process."""
    _ALONE[0] = True
    try:
        yield
    finally:
        _ALONE[0] = False


def current() -> World:
    """The world of the initialised process group (one rank without one, or inside
    :func:`alone`)."""
    if dist.is_available() and dist.is_initialized() and not _ALONE[0]:
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def launched_by_torchrun() -> bool:
    """Whether torchrun (or :func:`launch`) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def start(device_name: str) -> World:
    """Join the job torchrun started: gloo on the CPU, NCCL on CUDA (local rank r on GPU r:
    :func:`memrec.devices.resolve_device` maps ``cuda`` there)."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if device_name == "mps":
        raise ConfigError("distributed training runs on CPUs (gloo) or CUDA GPUs (NCCL), not mps")
    if wants_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {device_name!r}, but this machine has no CUDA device")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {local_rank} of this node has no GPU: {torch.cuda.device_count()} "
                              "CUDA devices for more processes per node")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wants_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return current()


def local_cuda_index() -> int | None:
    """The GPU of this rank (its local rank) in a distributed job; None outside one."""
    return int(os.environ.get("LOCAL_RANK", 0)) if current().distributed else None


def stop(finished: bool = True) -> None:
    """Leave the job. After a clean finish every rank first waits for the others: one that tears
    its gloo pairs down while a peer is still at work can die in C++ (SIGABRT, "terminate called
    without an active exception"). After an error it leaves at once: a barrier would hang until
    the collective timeout while torchrun's agent is already stopping the job."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """The elementwise sum of ``values`` over all ranks (a CPU tensor in, the same out).
    Sums travel as float64 (bools as their count): the result does not depend on the order the
    ranks' shares arrive in beyond float64 rounding."""
    if not world.distributed:
        return values
    dtype = values.dtype
    total = values.to(torch.float64 if dtype.is_floating_point else torch.int64).clone()
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    total = total.cpu()
    return total > 0 if dtype == torch.bool else total.to(dtype)


# -- batches --------------------------------------------------------------------------------------
def shard_batch(batch, world: World):
    """(this rank's rows of ``batch``, the factor its mean loss is scaled by).

    The rows are split into ``world.size`` contiguous parts with about equal numbers of training
    examples (``batch.row_examples()``). A batch with fewer rows than ranks is computed whole on
    every rank with factor 1: each then holds the global mean's gradient, and so does their
    average."""
    if not world.distributed:
        return batch, 1.0
    examples = batch.row_examples()
    n_rows = len(examples)
    if n_rows < world.size:
        return batch, 1.0
    total = int(examples.sum())
    ends = np.searchsorted(np.cumsum(examples.numpy()), np.arange(1, world.size) * total / world.size)
    # every rank keeps at least one row: boundaries strictly increase and leave rows to the right
    ends = np.minimum(np.maximum(ends, np.arange(1, world.size)), n_rows - world.size + np.arange(1, world.size))
    bounds = np.r_[0, ends, n_rows]
    rows = torch.arange(int(bounds[world.rank]), int(bounds[world.rank + 1]))
    local = batch.take(rows)
    return local, float(examples[rows].sum()) * world.size / total


class LossModule(torch.nn.Module):
    """The model and its task's loss as one module: DDP synchronises the gradients of what runs
    through a wrapped module's ``forward``, and a task's loss calls the model's scorers, not
    ``model.forward``."""

    def __init__(self, model: torch.nn.Module, task):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch, scale: float):
        return self.task.loss(self.model, batch) * scale


def data_parallel(model: torch.nn.Module, task, device: torch.device) -> torch.nn.Module:
    """``model`` with ``task``'s loss, wrapped in DistributedDataParallel.

    * ``forward_sync_buffers=False`` (formerly ``broadcast_buffers``): DDP would otherwise copy
      rank 0's buffers over every rank's at each forward — per-user memories kept as buffers
      are each rank's own writes. (Buffers are still made equal once, at the start, where every
      rank holds the same ones anyway.)
    * ``static_graph=True``: the same parameters take part in every step of a fit (no model
      here branches on the data), but not always all of them (STMP keeps STAMP's attention
      weights unused): DDP learns which from the first step, where without it it would stop with
      "Expected to have finished reduction" (``find_unused_parameters`` also copes, at the cost
      of a graph traversal per step and a warning per rank for models that use everything).
    """
    return torch.nn.parallel.DistributedDataParallel(
        LossModule(model, task), device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False, static_graph=True)


# -- launching ------------------------------------------------------------------------------------
def launch(nproc: int, args: list[str]) -> int:
    """Run ``python -m memrec ARGS`` as ``nproc`` ranks on this machine through torchrun's own
    launcher (a c10d rendezvous on a free loopback port). Rank 0 prints; the other ranks' output
    goes to log files, whose last line is shown when that rank fails. Returns the exit status: 0,
    or that of the first rank that failed, after one line naming it (a rank killed by a signal
    fails the job within about a second: the launcher stops the others)."""
    import tempfile

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    _quiet_launcher_logs()
    threads = max(1, (os.cpu_count() or 1) // nproc)     # the cores shared out, not oversubscribed
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ[LAUNCHED_BY_NPROC] = "1"        # the ranks leave Ctrl-C's message to this process
    with tempfile.TemporaryDirectory(prefix="memrec-ranks-") as logs:
        quiet = {rank: Std.ALL for rank in range(1, nproc)}
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                              monitor_interval=0.2, logs_specs=DefaultLogsSpecs(logs, redirects=quiet))
        try:
            elastic_launch(config, sys.executable)("-u", "-m", "memrec", *args)
        except ChildFailedError as e:
            return _report_failure(e, Path(logs))
        except SignalException as e:          # the launcher stopped the ranks before raising
            if e.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            print(f"memrec: error: stopped by {signal.Signals(e.sigval).name}; the ranks were stopped",
                  file=sys.stderr)
            return 128 + int(e.sigval)
    return 0


def launched_by_nproc() -> bool:
    """Whether this rank was started by ``memrec train --nproc`` (whose process reports for it)."""
    return os.environ.get(LAUNCHED_BY_NPROC) == "1" and launched_by_torchrun()


def _quiet_launcher_logs() -> None:
    """The launcher logs each stage of its agents' lives (and every worker it stops) as warnings;
    a failure reaches the user as one line instead."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _report_failure(error, logs: Path) -> int:
    """The job's exit status after a rank failed, and one line for it unless rank 0 exited
    with an error of its own, which it has printed (an error in the data or the config stops
    every rank alike: rank 0 speaks for them)."""
    main = error.failures.get(0)
    if main is not None and main.exitcode > 0:
        return main.exitcode
    rank, failure = error.get_first_failure()
    code = failure.exitcode
    if code < 0:
        how, status = f"was killed by {signal.Signals(-code).name}", 1
    else:
        last = _last_line(logs, failure.local_rank)
        how, status = f"failed (exit status {code})" + (f": {last}" if last else ""), code
    print(f"memrec: error: rank {rank} {how}; the other ranks were stopped", file=sys.stderr)
    return status


def _last_line(logs: Path, local_rank: int) -> str:
    """The last line a rank wrote to its stderr log, without the "memrec: error: " prefix."""
    for path in logs.glob(f"*/attempt_*/{local_rank}/stderr.log"):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return re.sub(r"^memrec: error: (rank \d+: )?", "", lines[-1])
    return ""


__all__ = ["World", "current", "alone", "launched_by_torchrun", "start", "stop", "barrier", "all_reduce_sum",
           "shard_batch", "data_parallel", "launch", "launched_by_nproc",
           "COLLECTIVE_TIMEOUT"]
