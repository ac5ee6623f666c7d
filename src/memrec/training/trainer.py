"""One training loop for every model.

Closed-form models are fitted once; gradient models run epochs of their task's batches with the
configured optimizer, optional gradient clipping, validation every ``eval_every`` epochs, early
stopping with patience and best-weights restore, and an atomic checkpoint after every epoch from
which ``resume=True`` continues to the same final weights as an uninterrupted run (all
randomness flows from one saved ``torch.Generator`` plus the saved global RNG state; a task's
own state, ``Task.state_dict`` — NMRN's stream task with its epoch counter and adversarial
generator —, is checkpointed with the model).

Each epoch's record (stage, epoch, loss, lr, seconds, validation metrics) goes to the
:mod:`~memrec.training.callbacks` — a run folder's ``log.jsonl``, ``curves.png`` and optional
TensorBoard events — and as a line to ``echo``; a two-stage recipe's pretraining and a refit are
fits of their own, labelled by ``stage`` ("pretraining GMF 3/20", "refit 2/5").

Under torchrun (:mod:`memrec.distributed`) the same loop runs on every rank: each computes its
shard of every global batch through DistributedDataParallel, validation is sharded and exact,
rank 0 decides early stopping and alone writes checkpoints, logs and lines.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..devices import autocast, check_event_times, module_device, resolve_device, to_device
from ..fileio import atomic_torch_save, safe_torch_load
from ..errors import CheckpointError, ConfigError
from ..data.splits import Split
from ..evaluation import Evaluator
from ..models.base import Model
from ..models.capabilities import StreamLearner
from ..progress import echo_stderr
from .callbacks import STAGES, Callback, CallbackList, FitStart, run_folder_callbacks
from .config import CLOCKS, TrainConfig
from .optim import TFRMSprop
from .tasks import make_task

OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
              "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD, "tf_rmsprop": TFRMSprop}


def make_optimizer(cfg: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """The configured optimizer over the model's parameter groups (each with its own L2)."""
    options = {"lr": cfg.lr}
    if cfg.optimizer in ("rmsprop", "sgd", "tf_rmsprop"):
        options["momentum"] = cfg.momentum
    if cfg.optimizer == "rmsprop":
        options.update(alpha=cfg.rmsprop_decay, eps=cfg.eps)
    if cfg.optimizer == "tf_rmsprop":
        options.update(decay=cfg.rmsprop_decay, eps=cfg.eps, initial_mean_square=cfg.rmsprop_initial)
    if cfg.optimizer in ("adam", "adagrad"):
        options["eps"] = cfg.eps
    if cfg.optimizer == "adam":
        options["betas"] = (0.9, cfg.adam_beta2)
    return OPTIMIZERS[cfg.optimizer](groups, **options)


class Validator(Protocol):
    """What the trainer validates with: :class:`~memrec.evaluation.Evaluator` on a split's
    validation part by default; a model kind with its own measure brings one (TransE: filtered
    link prediction on validation triples, :class:`memrec.knowledge_runs.LinkPredictionValidator`).
    ``evaluate`` returns ``{protocol: {metric: value}}``; the first of ``protocols`` holds
    ``train.valid_metric``, which early stopping follows."""

    protocols: tuple[str, ...]

    def evaluate(self, model) -> dict[str, dict[str, float]]: ...


@dataclass
class TrainResult:
    best_epoch: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    refit_epochs: int = 0      # > 0: the kept model was retrained on train + valid this long
    stopped_by_time: bool = False   # train.max_seconds ended the fit before train.epochs
    epochs_run: int = 0        # epochs trained (a time-stopped fit: the count to rerun it without the clock)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Use PyTorch's deterministic kernels while training, then restore the caller's setting.

    On CPU the default backward of a gather with repeated indices (``x[index]``, embedding
    lookups of the same row) accumulates in a thread-dependent order; seeded runs then differ
    in the last bits, and early stopping can amplify that into a different best epoch.
    """
    # cuBLAS is deterministic only with a fixed workspace (set before its first use)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def clip_tensor_norm_(p: torch.Tensor, max_norm: float) -> None:
    """Scale one parameter's gradient to norm ≤ max_norm; a sparse gradient is clipped on the
    norm of its (summed) rows, as TF's clip_by_norm does for IndexedSlices."""
    if p.grad.is_sparse:
        p.grad = p.grad.coalesce()
        values = p.grad._values()
        norm = values.norm()
        if norm > max_norm:
            values.mul_(max_norm / norm)
    else:
        torch.nn.utils.clip_grad_norm_(p, max_norm)


def check_data_parallel(model: Model, world: distributed.World, device: torch.device) -> None:
    """Refuse what cannot train data-parallel on ``world``: a stream learner (its memory is one
    causal pass that every event writes in turn) and sparse embedding gradients on NCCL (gloo
    reduces them)."""
    if not world.distributed:
        return
    if isinstance(model, StreamLearner):
        raise ConfigError(f"{type(model).__name__} learns from the time-ordered stream, one causal "
                          "pass whose memory every event writes in turn: it trains in one process")
    sparse = [name for name, m in model.named_modules()
              if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse]
    if sparse and device.type == "cuda":
        raise ConfigError(f"{type(model).__name__} has sparse embedding gradients ({', '.join(sparse)}), "
                          "which NCCL cannot reduce; train it on CPUs (gloo) or turn its sparse "
                          "gradients off")


def _silent(*_args, **_kwargs) -> None:
    """The echo of ranks other than 0."""


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (model initialisation, dropout). Data order and negatives use the
    trainer's own generator."""
    torch.manual_seed(seed)


class Trainer:
    """Fit a model on a split's training part, validating on its validation part.

    Parameters
    ----------
    config : TrainConfig
    run_dir : folder for ``checkpoint.pt`` (None: keep nothing on disk)
    progress : show a progress bar; None = only when stderr is a terminal
    echo : where per-epoch log lines go (stderr by default)
    stage : "train", or one of the fits around it (:data:`~memrec.training.callbacks.STAGES`):
        labels records and lines
    callbacks : told of every epoch; None = the run folder's (``log.jsonl``, ``curves.png``,
        TensorBoard if asked for; :func:`~memrec.training.callbacks.run_folder_callbacks`)
        when there is a ``run_dir``, else none
    world : the ranks training together (None: torchrun's process group if there is one, else
        this process alone); ranks other than 0 print nothing, write nothing and call no callback
    """

    def __init__(self, config: TrainConfig, *, run_dir: str | Path | None = None,
                 progress: bool | None = None, echo=None, stage: str = "train",
                 callbacks: list[Callback] | None = None, world: distributed.World | None = None):
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}; choose from {', '.join(STAGES)}")
        self.config = config
        self.world = distributed.current() if world is None else world
        main = self.world.is_main
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress = main and (sys.stderr.isatty() if progress is None else progress)
        self.echo = (echo or echo_stderr) if main else _silent
        self.stage = stage
        if callbacks is None:
            callbacks = [] if self.run_dir is None else run_folder_callbacks(self.run_dir, config)
        self.callbacks = CallbackList(callbacks if main else [])

    # -- public -------------------------------------------------------------------------------
    def fit(self, model: Model, split: Split | None = None, *, resume: bool = False, task=None,
            validator: Validator | None = None) -> TrainResult:
        """``task``: train with this task instead of the model's default one (the streaming
        protocol keeps the task of an offline fit, with its negative sampler, for online updates).
        ``validator``: validate with this instead of an :class:`Evaluator` on ``split.valid``.
        ``split`` None: the task brings all training data (knowledge-graph triples), and only
        ``validator`` validates."""
        if split is None and task is None:
            raise ValueError("Trainer.fit needs a split or a task")
        if split is not None:
            split.train.require_nonempty("training data")
        if not model.trainable:
            return self._fit_closed_form(model, split)
        with deterministic_algorithms(self.config.deterministic):
            return self._fit_gradient(model, split, resume, task, validator)

    # -- closed form --------------------------------------------------------------------------
    def _fit_closed_form(self, model: Model, split: Split) -> TrainResult:
        self.callbacks.on_fit_start(FitStart(self.stage, first_epoch=0, epochs=0))
        start = time.perf_counter()
        model.fit_closed_form(split.train)
        model.to(resolve_device(self.config.device))       # fitted on the CPU (NumPy/SciPy)
        seconds = time.perf_counter() - start
        record = {"stage": self.stage, "epoch": 0, "seconds": seconds}
        evaluator = self._validator(split)
        if evaluator is not None:
            record["valid"] = evaluator.evaluate(model)
        self.echo(f"fitted {type(model).__name__} in {seconds:.2f}s" + self._valid_text(record))
        self.callbacks.on_epoch_end(record)
        self.callbacks.on_fit_end([record])
        return TrainResult(best_epoch=0, train_seconds=seconds, history=[record])

    # -- gradient -----------------------------------------------------------------------------
    def _fit_gradient(self, model: Model, split: Split | None, resume: bool, task=None,
                      validator: Validator | None = None) -> TrainResult:
        cfg = self.config
        if split is not None:
            model.prepare(split.train)
        task = task if task is not None else make_task(model, split.train, cfg)
        blob = self._read_checkpoint() if resume else None
        if blob is not None:
            # the weights first: loading may change which parameters train (KSR freezes the
            # TransE tables it loads), and the optimizer's groups must be the saved run's
            self._load(self._checkpoint_path(), lambda: model.load_state_dict(blob["model"]))
        # the model on its device before the optimizer exists: its state follows the parameters
        device = resolve_device(cfg.device)
        model.to(device)
        check_event_times(model, device)
        check_data_parallel(model, self.world, device)
        optimizer = make_optimizer(cfg, model.parameter_groups(cfg.weight_decay))
        # the same generator on every rank: all draw the global batch, each computes its shard
        generator = torch.Generator().manual_seed(cfg.seed)
        evaluator = validator if validator is not None else self._validator(split)
        state = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "best_state": None,
                 "bad_epochs": 0, "history": [], "seconds": 0.0, "elapsed": 0.0}
        if blob is not None:
            state = {"elapsed": 0.0, **self._restore(blob, optimizer, generator, task)}
        step = distributed.data_parallel(model, task, device) if self.world.distributed else None
        if self.world.rank > 0:
            # dropout masks of other rows than rank 0's: a stream of this rank's own
            torch.manual_seed(cfg.seed + 1_000_003 * self.world.rank + state["epoch"])
        self.callbacks.on_fit_start(FitStart(self.stage, first_epoch=state["epoch"] + 1, epochs=cfg.epochs))
        label = self._label(model)
        stopped = out_of_time = False
        clock = CLOCKS[cfg.clock]
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            epoch_start = clock()
            record = self._train_epoch(model, task, optimizer, generator, epoch, label, step)
            state["seconds"] += record["seconds"]
            if evaluator is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                record["valid"] = evaluator.evaluate(model)
                score = self.world.agree(self._valid_score(record["valid"], evaluator))
                if score > state["best_score"]:
                    state.update(best_score=score, best_epoch=epoch, bad_epochs=0,
                                 best_state=copy.deepcopy(model.state_dict()))
                    record["best"] = True
                else:
                    state["bad_epochs"] += 1
            elif evaluator is None:
                state["best_epoch"] = epoch
            state["history"].append(record)
            state["epoch"] = epoch
            self.echo(self._epoch_text(record, cfg.epochs, label))
            stopped = bool(self.world.agree(cfg.patience > 0 and state["bad_epochs"] >= cfg.patience))
            state["elapsed"] += clock() - epoch_start
            # rank 0's clock decides, so every rank leaves after the same epoch
            out_of_time = epoch < cfg.epochs and bool(self.world.agree(
                0 < cfg.max_seconds <= state["elapsed"]))
            # told before the checkpoint: a crash between the two leaves an epoch that the
            # resumed fit's log drops and runs again, never one missing from the log
            self.callbacks.on_epoch_end(record)
            self._checkpoint(model, optimizer, generator, state, task)
            if stopped:
                self.echo(f"early stop: no {cfg.valid_metric} improvement for {cfg.patience} evaluations; "
                          f"best epoch {state['best_epoch']}")
                break
            if out_of_time:
                self.echo(f"time limit: train.max_seconds = {cfg.max_seconds:g} passed after epoch {epoch}; "
                          f"best epoch {state['best_epoch']}")
                break
        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
        model.eval()                  # a fitted model is ready for inference (dropout off)
        self.callbacks.on_fit_end(state["history"])
        return TrainResult(state["best_epoch"], state["seconds"], state["history"], stopped,
                           stopped_by_time=out_of_time and not stopped, epochs_run=state["epoch"])

    def _train_epoch(self, model, task, optimizer, generator, epoch, label, step=None) -> dict:
        """One epoch; ``step``: the DDP-wrapped loss of a distributed run (None: one process)."""
        cfg = self.config
        model.train()
        lr = optimizer.param_groups[0]["lr"]      # every group has train.lr; nothing schedules it
        start = time.perf_counter()
        total, seen = 0.0, 0
        bar = tqdm(total=task.n_examples, desc=f"{label} {epoch}/{cfg.epochs}", unit="ex", leave=False,
                   disable=not self.progress, dynamic_ncols=True)
        device = module_device(model)
        for whole in task.batches(generator):
            batch, scale = distributed.shard_batch(whole, self.world)
            with autocast(device, cfg.precision):      # bf16 products; the loss in float32
                if step is None:
                    loss = task.loss(model, to_device(batch, device)).float()
                else:      # scaled so that DDP's average is the global batch's gradient
                    loss = step(to_device(batch, device), scale).float()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; "
                                         "lower train.lr or enable gradient clipping")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_value > 0:
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip_grad_value)
            if cfg.clip_grad_norm > 0 and cfg.clip_per_tensor:
                for p in model.parameters():  # TF's clip_by_norm per variable (CMN's recipe)
                    if p.grad is not None:
                        clip_tensor_norm_(p, cfg.clip_grad_norm)
            elif cfg.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            # a batch too small to shard runs whole on every rank: rank 0 counts it
            n = batch.size if batch is not whole or self.world.is_main else 0
            total += loss.item() / scale * n
            seen += n
            bar.update(n * self.world.size)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        bar.close()
        if self.world.distributed:     # the epoch's loss over every rank's examples
            total, seen = distributed.all_reduce_sum(torch.tensor([total, seen], dtype=torch.float64),
                                                     self.world).tolist()
        seconds = time.perf_counter() - start
        return {"stage": self.stage, "epoch": epoch, "loss": total / max(seen, 1), "lr": lr,
                "seconds": seconds, "examples_per_s": seen / max(seconds, 1e-9)}

    # -- validation ---------------------------------------------------------------------------
    def _validator(self, split: Split | None) -> Evaluator | None:
        """The validation evaluator: ``train.valid_protocol`` on the split's validation part (a
        protocol it cannot run is an error; ``auto`` is session for a session split, else full);
        None when nothing is held out for validation (or no split: a task that validates itself)."""
        if split is None:
            return None
        supported = Evaluator.supported(split, "valid")
        if not supported:
            return None
        protocol = self.config.valid_protocol
        if protocol == "auto":
            protocol = "session" if "session" in supported else "full"
        try:
            # per-epoch validation needs the metric it stops on, not the catalogue metrics
            return Evaluator(split, "valid", protocols=(protocol,), batch_size=self.config.eval_batch_size,
                             beyond_accuracy=False, progress=self.progress, world=self.world)
        except ConfigError as e:
            raise ConfigError(f"train.valid_protocol: {e}") from None

    def _valid_score(self, metrics: dict, evaluator: Evaluator) -> float:
        values = metrics[evaluator.protocols[0]]
        if self.config.valid_metric not in values:
            raise ValueError(f"train.valid_metric {self.config.valid_metric!r} is not reported; "
                             f"choose from {', '.join(values)}")
        return values[self.config.valid_metric]

    # -- persistence --------------------------------------------------------------------------
    def _checkpoint(self, model, optimizer, generator, state, task=None) -> None:
        if self.run_dir is None or not self.world.is_main:
            return
        atomic_torch_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "task": task.state_dict(),
            "best_state": state["best_state"] or {},
            "counters": json.dumps({k: state[k] for k in
                                    ("epoch", "best_score", "best_epoch", "bad_epochs", "history", "seconds", "elapsed")}),
        }, self.run_dir / "checkpoint.pt")

    def _checkpoint_path(self) -> Path:
        if self.run_dir is None:
            raise CheckpointError("--resume needs a run folder")
        return self.run_dir / "checkpoint.pt"

    def _read_checkpoint(self) -> dict:
        return safe_torch_load(self._checkpoint_path())

    @staticmethod
    def _load(path: Path, action):
        try:
            return action()
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: does not match this model and config ({e})") from None

    def _restore(self, blob: dict, optimizer, generator, task) -> dict:
        """Everything but the model's weights (loaded first) from the checkpoint ``blob``."""
        def restore() -> dict:
            optimizer.load_state_dict(blob["optimizer"])
            generator.set_state(blob["generator"])
            torch.set_rng_state(blob["torch_rng"])
            task.load_state_dict(blob.get("task", {}))
            return json.loads(blob["counters"])
        state = self._load(self._checkpoint_path(), restore)
        state["best_state"] = blob["best_state"] or None
        self.echo(f"resuming after epoch {state['epoch']}")
        return state

    # -- text ---------------------------------------------------------------------------------
    def _valid_text(self, record: dict) -> str:
        if "valid" not in record:
            return ""
        protocol, values = next(iter(record["valid"].items()))
        metric = self.config.valid_metric
        return f"  valid {protocol} {metric} {values.get(metric, float('nan')):.4f}"

    def _label(self, model: Model) -> str:
        """What an epoch line starts with: "epoch", or the stage that is not the training
        proper ("pretraining GMF", "refit"), so its epochs are not read as the model's."""
        labels = {"pretrain": f"pretraining {type(model).__name__}", "train": "epoch",
                  "refit_pretrain": f"refit: pretraining {type(model).__name__}", "refit": "refit"}
        return labels[self.stage]

    def _epoch_text(self, record: dict, epochs: int, label: str) -> str:
        return (f"{label} {record['epoch']}/{epochs}  loss {record['loss']:.4f}  "
                f"{record['examples_per_s']:,.0f} ex/s  {record['seconds']:.1f}s"
                + self._valid_text(record) + ("  *best" if record.get("best") else ""))
