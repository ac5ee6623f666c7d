"""Run configuration: typed dataclasses, loaded from TOML with ``--set`` overrides.

A config file has three tables; every key is checked, an unknown one is an error::

    [model]           # name + the model's constructor keyword arguments
    name = "bprmf"
    dim = 64

    [train]           # TrainConfig fields
    epochs = 50
    lr = 0.001

    [data]            # DataConfig fields
    split = "loo"

A model parameter that accepts None (annotated ``int | None``) is set to None with the string
``"none"`` in a file or ``--set model.KEY=none`` (TOML has no null).

A knowledge-graph model (``transe``) reads the same three tables: ``[model]`` its constructor
arguments, ``[train]`` the TrainConfig fields its triple task uses (loss = "hinge", margin,
n_negatives, …; validation on filtered link-prediction ``MRR``), ``[data]`` test_frac /
valid_frac / seed and the KSR relation restriction (min_head_share, min_item_share; a KSR run
that trains its own TransE reads these two from its own ``[data]``).

TOML lives here and in the CLI only; models and the trainer see plain dataclasses.
"""

from __future__ import annotations

import math
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..devices import DEVICE_PATTERN, PRECISIONS
from ..models import check_params, effective_params, spec
from ..errors import ConfigError


#: ``train.clock``: the seconds a time budget counts
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every field can be set in ``[train]`` or with ``--set train.KEY=VALUE``."""

    epochs: int = 20
    batch_size: int = 1024
    optimizer: str = "adam"            # adam | rmsprop | adagrad | sgd | tf_rmsprop
    lr: float = 1e-3
    weight_decay: float = 0.0          # L2, on the parameters the model's parameter_groups name
    momentum: float = 0.0              # sgd / rmsprop
    rmsprop_decay: float = 0.99        # rmsprop's moving-average factor (TF calls it decay)
    rmsprop_initial: float = 1.0       # tf_rmsprop's starting mean square (TF1: 1)
    eps: float = 1e-8
    adam_beta2: float = 0.999          # Adam's second-moment decay (SASRec's code: 0.98)
    device: str = "auto"               # auto | cpu | cuda | cuda:N | mps (memrec.devices)
    precision: str = "fp32"            # fp32 | bf16 (autocast of the training forward pass)
    clip_grad_norm: float = 0.0        # 0 = no clipping; else max L2 norm (global or per tensor)
    clip_per_tensor: bool = False      # clip each parameter's gradient norm on its own
    clip_grad_value: float = 0.0       # 0 = no clipping; else per-element clamp
    loss: str = "bpr"                  # bpr | bce | hinge | sampled_softmax | bpr_max | softmax (next-item)
    margin: float = 1.0                # hinge margin
    bpr_max_reg: float = 1.0           # bpr_max's score regulariser λ (GRU4Rec's bpreg)
    n_negatives: int = 1
    sampler: str = "uniform"           # uniform | popularity | adversarial (stream models: NMRN's GAN)
    sampler_alpha: float = 1.0         # popularity exponent
    sample_only_seen_items: bool = False
    patience: int = 5                  # epochs without improvement before stopping; 0 = never stop
    max_seconds: float = 0.0           # 0 = no limit; else stop after the epoch (training + validation)
                                       # that passes this many seconds, keeping the best epoch so far
    clock: str = "wall"                # what max_seconds (and tune budgets) count: wall seconds, or
                                       # cpu: this process's CPU seconds, all threads (not slowed by
                                       # other jobs on a shared machine; not GPU time)
    valid_metric: str = "NDCG@10"
    valid_protocol: str = "auto"       # auto: session on a session split, else full; or one of them
    eval_every: int = 1
    eval_batch_size: int = 1024
    test_protocols: str = "auto"       # final test protocols (comma list); auto: all the split can run
    deterministic: bool = True         # PyTorch deterministic kernels (bitwise-reproducible runs)
    pretrain_epochs: int = 0           # two-stage recipes (CMN: GMF pretraining); 0 = none
    pretrain_weight_decay: float = 1e-4
    pretrain_batch_size: int = 0       # 0 = batch_size
    refit: bool = False                # after choosing epochs on valid, retrain on train + valid
    tensorboard: bool = False          # also TensorBoard events in RUN/tensorboard (pip install tensorboard)
    seed: int = 0
    stream_mode: str = "micro_batch"   # stream models: micro_batch (fast) | exact (event by event)
    gan_pool: int = 100                # adversarial sampler: uniform candidate pool per event
    gan_dim: int = 32                  # generator embedding size
    gan_lr: float = 1e-3               # generator Adam learning rate
    gan_temperature: float = 1.0       # generator softmax temperature
    gan_warmup_epochs: int = 1         # recommender epochs with uniform negatives before the GAN
    gan_pretrain_epochs: int = 2       # generator BPR pretraining epochs, then alternate

    def __post_init__(self):
        choices = {"optimizer": ("adam", "rmsprop", "adagrad", "sgd", "tf_rmsprop"),
                   "loss": ("bpr", "bce", "hinge", "sampled_softmax", "bpr_max", "softmax"),
                   "sampler": ("uniform", "popularity", "adversarial"),
                   "stream_mode": ("micro_batch", "exact"),
                   "valid_protocol": ("auto", "full", "sampled", "session"),
                   "precision": PRECISIONS, "clock": tuple(CLOCKS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name} = {getattr(self, name)!r}; choose from {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "n_negatives", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:     # epochs = 0 would save an untrained model as "best"
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        for protocol in self.test_protocols.split(","):
            if protocol.strip() not in ("auto", "full", "sampled", "session") or (
                    protocol.strip() == "auto" and self.test_protocols.strip() != "auto"):
                raise ConfigError(f"train.test_protocols: unknown protocol {protocol!r}; "
                                  "choose from full, sampled, session (a comma list), or auto")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"train.{f.name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.max_seconds < 0:
            raise ConfigError(f"train.max_seconds must be 0 (no limit) or positive, got {self.max_seconds}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"train.device = {self.device!r}; choose auto, cpu, cuda, cuda:N or mps")
        if not 0 <= self.adam_beta2 < 1:
            raise ConfigError(f"train.adam_beta2 must be in [0, 1), got {self.adam_beta2}")


@dataclass(frozen=True)
class DataConfig:
    """How to read, filter and split the data (``[data]`` table)."""

    format: str = ""                   # "" = auto-detect
    split: str = "auto"                # auto (the file's own split, else loo) | loo | temporal | random | session | given
    n_negatives: int = 100             # sampled-protocol negatives per user; 0 = none
    threshold: float = 0.0             # keep ratings >= threshold (0 = keep all)
    user_k: int = 0                    # k-core filtering
    item_k: int = 0
    duplicates: str = "keep"           # keep | first | last | error
    valid_from_train: bool = True     # a given split without validation: carve one from train
    test_frac: float = 0.1
    valid_frac: float = 0.1
    seed: int = 0
    linked_only: bool = False          # keep only items linked to a knowledge-graph entity (KSR)
    # knowledge-graph models (transe) split the graph's triples at random by test_frac /
    # valid_frac / seed; these two choose KSR's memory slots (KnowledgeGraph.item_relations),
    # read by a TransE run and by a KSR run that trains its own TransE (memrec.ksr_knowledge)
    min_head_share: float = 0.5        # a relation's triples with a linked item at its item end, at least
    min_item_share: float = 0.01       # linked items a relation touches (either side), at least


@dataclass(frozen=True)
class RunConfig:
    model: str
    model_params: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_json(self) -> dict:
        """Every setting, the model's defaults included (what ``run.json`` records)."""
        return {"model": {"name": self.model, **effective_params(self.model, self.model_params)},
                "train": asdict(self.train), "data": asdict(self.data)}

    @classmethod
    def from_json(cls, data: dict) -> "RunConfig":
        """The configuration :meth:`to_json` wrote (a run's ``run.json``), checked again."""
        model = dict(data["model"])
        name = model.pop("name")
        return cls(name, check_params(name, model), typed_section(TrainConfig, "train", data["train"]),
                   typed_section(DataConfig, "data", data["data"]))

    def differences(self, other: "RunConfig") -> list[str]:
        """``section.key (self's value vs other's)`` for every setting the two do not share."""
        mine, theirs = self.to_json(), other.to_json()
        out = []
        for section in mine:
            for key in sorted(set(mine[section]) | set(theirs[section])):
                a, b = mine[section].get(key), theirs[section].get(key)
                if a != b:
                    out.append(f"{section}.{key} ({a!r} vs {b!r})")
        return out


def typed_section(cls, section: str, values: dict):
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    allowed = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(f"unknown key {section}.{key}; known: {', '.join(allowed)}")
        out[key] = _coerce(f"{section}.{key}", getattr(cls(), key), value)
    return cls(**out)


def _coerce(name: str, default, value):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def parse_override(text: str) -> tuple[str, str, object]:
    """``"train.lr=0.01"`` → ``("train", "lr", 0.01)``; the value is read as a TOML value,
    falling back to a plain string (so ``--set data.split=loo`` needs no quotes).

    TOML has no null: a bare ``none`` (any case) is Python's None, for the model parameters
    that accept it (``--set model.max_history=none``; in a config file write the string
    ``max_history = "none"``); every other key rejects it. A quoted ``"none"`` stays a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set expects SECTION.KEY=VALUE (e.g. train.lr=0.01), got {text!r}")
    key, raw = text.split("=", 1)
    section, name = key.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = None if raw.strip().lower() == "none" else raw.strip()
    return section, name, value


def toml_literal(value) -> str:
    """A Python value as a TOML literal for an override string; ``None`` (which TOML cannot
    write) as ``none``, which :func:`memrec.models.check_params` reads back as None for a
    parameter that accepts it and rejects, naming the key, for any other."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


#: keys that name a file or folder: set in a config file, a relative path is relative to that
#: file (configs/ksr.toml's transe = "../runs/transe" works from any working directory); given
#: with --set, relative to the working directory, as any command-line path
PATH_KEYS = {"model": ("transe",)}


def _relative_to(config_path: Path, section: str, values: dict) -> dict:
    """``values`` with the relative paths of :data:`PATH_KEYS` resolved against the config file."""
    out = dict(values)
    for key in PATH_KEYS.get(section, ()):
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str((config_path.parent / value).resolve())
    return out


def read_toml(path: Path, what: str) -> dict:
    """A TOML file's tables; a missing file or bad TOML is an error naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def read_tables(path: str | Path | None, overrides=()) -> dict[str, dict]:
    """The ``[model]``, ``[train]`` and ``[data]`` tables of a config file with ``--set`` overrides
    applied (untyped; an unknown table or section is an error)."""
    tables: dict[str, dict] = {"model": {}, "train": {}, "data": {}}
    if path is not None:
        path = Path(path)
        loaded = read_toml(path, "config")
        for section, values in loaded.items():
            if section not in tables or not isinstance(values, dict):
                raise ConfigError(f"{path}: unknown table [{section}]; use [model], [train], [data]")
            tables[section].update(_relative_to(path, section, values))
    for text in overrides:
        section, name, value = parse_override(text)
        if section not in tables:
            raise ConfigError(f"--set {text}: unknown section {section!r}; use model, train or data")
        tables[section][name] = value
    return tables


def load_config(model: str | None = None, path: str | Path | None = None,
                overrides: list[str] = (), **train_overrides) -> RunConfig:
    """Merge (model's training defaults) ← config file ← ``--set`` overrides ← explicit flags.

    ``model`` (from the command line) must agree with the file's ``[model] name`` if both exist.
    """
    tables = read_tables(path, overrides)
    file_model = tables["model"].pop("name", None)
    if model and file_model and model != file_model:
        raise ConfigError(f"the command line says model {model!r} but the config says {file_model!r}")
    name = model or file_model
    if not name:
        raise ConfigError("no model given (name it on the command line or as [model] name)")
    model_spec = spec(name)
    train_values = {**model_spec.train_defaults, **tables["train"],
                    **{k: v for k, v in train_overrides.items() if v is not None}}
    return RunConfig(model=name, model_params=check_params(name, tables["model"]),
                     train=typed_section(TrainConfig, "train", train_values),
                     data=typed_section(DataConfig, "data", {**model_spec.data_defaults, **tables["data"]}))


def with_seed(config: RunConfig, seed: int) -> RunConfig:
    return replace(config, train=replace(config.train, seed=seed))
