"""Devices and precision: where training, evaluation and recommendation run.

``train.device`` (``--device``) names the device: ``auto`` (a CUDA GPU when there is one, else
Apple's MPS, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. The trainer moves the
model and every batch there; models create their tensors on their parameters' device and never
choose one. Data pipelines (negative sampling, batching, the evaluator's bookkeeping) stay on
the CPU; scores come back to it for the metrics.

``train.precision``: ``fp32`` or ``bf16``. With bf16 the training forward pass runs under
``torch.autocast`` (matrix products — the output layers and attention — in bfloat16; reductions,
softmax and the loss in float32), with float32 master weights and optimizer state.

Serving a saved model picks its device the same way: ``memrec evaluate``, ``recommend``, ``serve``,
``state rebuild`` and ``stream`` take ``--device`` (default ``auto``); in Python,
``Recommender.load(folder, device=...)`` / :func:`memrec.checkpoint.load_model` (default ``cpu``).
A checkpoint's tensors are read onto the CPU whatever device wrote them, then moved, so a model
trained on a GPU loads on a machine without one. Live states (:mod:`memrec.serving.live`) are
written and read on the model's device and stored as bytes, which are the same from any device.
"""

from __future__ import annotations

import dataclasses
import re

import torch

from .distributed import local_cuda_index
from .errors import ConfigError

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """The torch device ``name`` names; a device this machine lacks is a clear error naming
    ``setting``, the option the name came from (``train.device``, ``--device``)."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"{setting} = {name!r}; choose auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and local_cuda_index() is not None:
        device = torch.device("cuda", local_cuda_index())    # one GPU per rank, whatever cuda:N said
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting} = {name!r}, but this machine has no CUDA device "
                          "(or this torch build has no CUDA); use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{setting} = {name!r}, but there are {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{setting} = {name!r}, but MPS is not available here; use cpu or auto")
    return device


def as_device(device: str | torch.device, setting: str = "device") -> torch.device:
    """A ``torch.device`` as given (any, ``meta`` included), or the one a device name resolves
    to (:func:`resolve_device`)."""
    return device if isinstance(device, torch.device) else resolve_device(device, setting)


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors live (its first parameter's or buffer's device; the CPU for a
    module with neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_event_times(model, device: torch.device) -> None:
    """A model that reads event times (``reads_times``) gets them as float64, which Apple's MPS
    does not have: say so before any batch is moved there."""
    if model.reads_times and device.type == "mps":
        raise ConfigError(f"{type(model).__name__} reads the events' timestamps as float64, which MPS "
                          "does not support: use train.device = \"cpu\" (or a DEMN with model.clock = \"steps\")")


def to_device(batch, device: torch.device):
    """A batch (tensor, dataclass of tensors, list or tuple of them) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(x, device) for x in batch)
    return batch


def autocast(device: torch.device, precision: str):
    """The forward pass's precision context: bfloat16 autocast for ``bf16``, else nothing."""
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision = {precision!r}; choose {' or '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


__all__ = ["resolve_device", "as_device", "module_device", "to_device", "autocast", "PRECISIONS"]
