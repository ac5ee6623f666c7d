"""What the trainer tells the world after each epoch: the run folder's training curves.

A :class:`Callback` hears three things from a :class:`~memrec.training.trainer.Trainer` fit: it
starts (:class:`FitStart`: which stage, from which epoch — after the checkpoint's on a resume),
an epoch ended (its record: stage, epoch, loss, lr, seconds, validation metrics), and it ended.
A run folder gets, from :func:`run_folder_callbacks`:

* ``log.jsonl`` (:class:`EpochLog`): one JSON line per epoch of every stage — ``pretrain`` (a
  two-stage recipe's stand-in model, e.g. CMN's GMF), ``train``, then with ``train.refit`` the
  fresh model's ``refit_pretrain`` and ``refit`` (train + valid) — appended as each epoch
  ends; a resumed fit first drops the lines its checkpoint does not hold;
* ``curves.png`` (:class:`TrainingCurves`): loss and the validation metric per epoch, redrawn
  from the log when a fit ends;
* ``tensorboard/<stage>/`` (:class:`TensorBoardLog`, with ``train.tensorboard = true``): the same
  scalars as TensorBoard events; needs the optional ``tensorboard`` package.

The same callbacks serve every stage of a run (the façade hands them to the pretraining,
training and refit trainers), so one log and one figure tell the whole story.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..fileio import append_line, atomic_write_bytes
from .config import TrainConfig

#: a run's stages in the order they run; a record without one is from before stages were logged
STAGES = ("pretrain", "train", "refit_pretrain", "refit")
STAGE_NAMES = {"pretrain": "pretraining", "train": "training",
               "refit_pretrain": "pretraining for the refit", "refit": "refit (train + valid)"}


@dataclass(frozen=True)
class FitStart:
    """A fit begins: its ``stage``, the first epoch it will run (1; the checkpoint's epoch + 1
    on a resume; 0 for a closed-form fit, whose one record is epoch 0) and its epoch budget."""

    stage: str
    first_epoch: int
    epochs: int


class Callback:
    """Hooks the trainer calls; each does nothing unless a subclass says otherwise."""

    def on_fit_start(self, start: FitStart) -> None:
        pass

    def on_epoch_end(self, record: dict) -> None:
        pass

    def on_fit_end(self, history: list[dict]) -> None:
        pass


class CallbackList(Callback):
    """Several callbacks heard as one, in order (the log before the figure drawn from it)."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def on_fit_start(self, start: FitStart) -> None:
        for callback in self.callbacks:
            callback.on_fit_start(start)

    def on_epoch_end(self, record: dict) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(record)

    def on_fit_end(self, history: list[dict]) -> None:
        for callback in self.callbacks:
            callback.on_fit_end(history)


def _stage(record: dict) -> str:
    return record.get("stage", "train")


def _comes_before(record: dict, start: FitStart) -> bool:
    """Whether a logged epoch precedes the fit that starts (and so stays in the log): an
    earlier stage's, or this stage's before its first epoch. A later stage's record is from
    a run this fit replaces (a refit interrupted before the resumed training finished)."""
    order = STAGES.index(_stage(record)), record["epoch"]
    return order < (STAGES.index(start.stage), start.first_epoch)


def read_log(path: str | Path) -> list[str]:
    """The JSON lines of a log, without a torn last line (a crash in the middle of appending
    it); a missing log has none."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    if lines:
        try:
            json.loads(lines[-1])
        except ValueError:
            lines.pop()
    return lines


class EpochLog(Callback):
    """``log.jsonl``: a line per epoch, appended as it ends (before the checkpoint is written,
    so a crash between the two leaves a line the resumed fit drops, never a gap)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_fit_start(self, start: FitStart) -> None:
        if not self.path.is_file():
            return
        kept = "".join(line + "\n" for line in read_log(self.path)
                       if _comes_before(json.loads(line), start))
        if kept != self.path.read_text():
            # drop the epochs this fit runs (again) and a torn last line; the rest byte for byte
            atomic_write_bytes(self.path, kept.encode())

    def on_epoch_end(self, record: dict) -> None:
        append_line(self.path, json.dumps(record))


class TrainingCurves(Callback):
    """``curves.png`` from the run's ``log.jsonl`` when a fit ends (so it shows every stage,
    and the epochs before a resume): loss per stage, and ``metric`` of the first validation
    protocol."""

    def __init__(self, log_path: str | Path, path: str | Path, metric: str):
        self.log_path, self.path, self.metric = Path(log_path), Path(path), metric

    def on_fit_end(self, history: list[dict]) -> None:
        from ..plots import training_curves_plot
        records = [json.loads(line) for line in read_log(self.log_path)]
        losses = {}
        for stage in STAGES:
            rows = [r for r in records if _stage(r) == stage and "loss" in r]
            if rows:
                losses[STAGE_NAMES[stage]] = ([r["epoch"] for r in rows], [r["loss"] for r in rows])
        validated = [r for r in records if _stage(r) == "train" and "valid" in r]
        protocol = next(iter(validated[0]["valid"])) if validated else ""
        validated = [r for r in validated if self.metric in r["valid"].get(protocol, {})]
        best = [r["epoch"] for r in validated if r.get("best")]
        training_curves_plot(losses, ([r["epoch"] for r in validated],
                                      [r["valid"][protocol][self.metric] for r in validated]),
                             f"{protocol} {self.metric}".strip(), self.path,
                             best_epoch=best[-1] if best else None)


def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``, or a ConfigError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("pip install tensorboard (or memrec[tensorboard]) to write TensorBoard "
                          "events: train.tensorboard = true / --tensorboard asks for them, and the "
                          "tensorboard package is not installed") from None
    return SummaryWriter


class TensorBoardLog(Callback):
    """TensorBoard scalars in ``folder/<stage>`` (one TensorBoard run per stage, so pretraining
    and training share tags without sharing steps): ``loss``, ``lr``, ``seconds`` and
    ``valid/<protocol>/<metric>``, step = epoch. A resumed fit purges the events of the epochs
    it runs again."""

    def __init__(self, folder: str | Path):
        self.summary_writer = require_tensorboard()
        self.folder = Path(folder)
        self.writer = None

    def on_fit_start(self, start: FitStart) -> None:
        self.writer = self.summary_writer(str(self.folder / start.stage), purge_step=start.first_epoch)

    def on_epoch_end(self, record: dict) -> None:
        epoch = record["epoch"]
        for key in ("loss", "lr", "seconds"):
            if key in record:
                self.writer.add_scalar(key, record[key], epoch)
        for protocol, values in record.get("valid", {}).items():
            for metric, value in values.items():
                self.writer.add_scalar(f"valid/{protocol}/{metric}", value, epoch)
        self.writer.flush()           # an interrupted run keeps its epochs' events

    def on_fit_end(self, history: list[dict]) -> None:
        self.writer.close()


def run_folder_callbacks(run_dir: str | Path, config: TrainConfig) -> list[Callback]:
    """The callbacks writing a run folder's training record (see the module docstring)."""
    run_dir = Path(run_dir)
    callbacks = [EpochLog(run_dir / "log.jsonl"),
                 TrainingCurves(run_dir / "log.jsonl", run_dir / "curves.png", config.valid_metric)]
    if config.tensorboard:
        callbacks.append(TensorBoardLog(run_dir / "tensorboard"))
    return callbacks


__all__ = ["Callback", "CallbackList", "FitStart", "EpochLog", "TrainingCurves", "TensorBoardLog", "STAGES",
           "read_log", "require_tensorboard", "run_folder_callbacks"]
