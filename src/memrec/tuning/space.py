"""Search spaces: what ``memrec tune`` varies for each registered model, and the ``SPACE.toml``
files that override it.

A space file has ``[model]`` and ``[train]`` tables of parameters, one inline table each::

    [model]
    dim = {type = "categorical", choices = [32, 64, 128]}
    l2 = {type = "float", low = 1.0, high = 10000.0, log = true}

    [train]
    lr = {type = "log", low = 1e-4, high = 1e-2}      # "log" = a float on a log scale

Types: ``float`` and ``int`` (``low``, ``high``, optional ``log`` and ``step``), ``log`` (a float
on a log scale), ``categorical`` (``choices``). A parameter the model or the trainer does not
have, or a key a type does not take, is an error — as in configs. The parameters a file names
replace the default space's entries of the same name; the others stay.

The default spaces vary what each paper (or, for the baselines, the reproducibility studies of
Ferrari Dacrema et al. and Anelli et al.) varied: sizes, learning rate, regularisation, dropout,
hops, slots, neighbourhoods, β, λ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ConfigError
from ..models import REGISTRY, hyperparameters
from ..training.config import TrainConfig, read_toml

#: the keys each parameter type takes (besides ``type``)
TYPE_KEYS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
             "log": {"low", "high"}, "categorical": {"choices"}}


@dataclass(frozen=True)
class Param:
    """One searched setting: ``section.name`` drawn as ``kind`` from [low, high] or ``choices``."""

    section: str                       # "model" | "train"
    name: str
    kind: str                          # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def suggest(self, trial):
        """Draw this parameter for an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)


    def nearest(self, value):
        """The point of this parameter's domain nearest ``value`` (a base config's setting): clamped
        into [low, high], or the closest numeric choice; None when there is none (a string not
        among the choices)."""
        if self.kind == "categorical":
            if value in self.choices:
                return value
            numeric = [c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
            if not numeric or not isinstance(value, (int, float)):
                return None
            return min(numeric, key=lambda c: abs(c - value))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        clamped = min(max(value, self.low), self.high)
        return int(round(clamped)) if self.kind == "int" else float(clamped)


def _float(section, name, low, high, log=False):
    return Param(section, name, "float", low, high, log)


def _int(section, name, low, high, log=False):
    return Param(section, name, "int", low, high, log)


def _choice(section, name, *choices):
    return Param(section, name, "categorical", choices=choices)


_LR = _float("train", "lr", 1e-4, 1e-2, log=True)
_L2 = _float("train", "weight_decay", 1e-7, 1e-2, log=True)
_DIM = _choice("model", "dim", 32, 64, 128)
_INIT = _float("model", "init_std", 1e-3, 0.1, log=True)      # sparse data prefers small tables

#: the default search space of every registered recommender (a test keeps it complete; a
#: knowledge-graph embedding such as TransE is tuned through the KSR that reads it)
DEFAULT_SPACES: dict[str, tuple[Param, ...]] = {
    "pop": (),
    "itemknn": (_int("model", "neighbours", 5, 1000, log=True), _float("model", "shrink", 0.0, 1000.0)),
    "rp3beta": (_float("model", "alpha", 0.0, 2.0), _float("model", "beta", 0.0, 1.0),
                _int("model", "neighbours", 5, 1000, log=True)),
    "ease": (_float("model", "l2", 1.0, 1e5, log=True),),
    "bprmf": (_DIM, _LR, _L2, _INIT),
    "gmf": (_DIM, _LR, _L2),
    "cmn": (_DIM, _int("model", "hops", 1, 4), _LR, _float("train", "weight_decay", 1e-4, 1.0, log=True)),
    "fpmc": (_DIM, _LR, _L2, _INIT),
    "gru4rec": (_DIM, _choice("model", "hidden", 64, 128, 256), _float("model", "dropout", 0.0, 0.5), _LR),
    "sasrec": (_choice("model", "dim", 32, 50, 64), _int("model", "blocks", 1, 3),
               _float("model", "dropout", 0.1, 0.6), _LR),
    "rumi": (_DIM, _int("model", "slots", 5, 50, log=True), _float("model", "alpha", 0.0, 1.0), _LR, _L2, _INIT),
    "rumf": (_DIM, _int("model", "slots", 5, 50, log=True), _float("model", "alpha", 0.0, 1.0), _LR, _L2, _INIT),
    "ksr": (_choice("model", "hidden", 64, 128, 256), _float("model", "dropout", 0.0, 0.5), _LR, _L2),
    "recency": (),
    "sknn": (_int("model", "neighbours", 20, 500, log=True), _choice("model", "sample_size", 500, 1000, 5000)),
    "vsknn": (_int("model", "neighbours", 20, 500, log=True), _choice("model", "sample_size", 500, 1000, 5000)),
    "stan": (_int("model", "neighbours", 20, 500, log=True), _choice("model", "sample_size", 500, 1000, 5000),
             _float("model", "lambda1", 0.1, 10.0, log=True), _float("model", "lambda3", 0.1, 10.0, log=True)),
    "stamp": (_choice("model", "dim", 50, 100, 200), _LR),
    "stmp": (_choice("model", "dim", 50, 100, 200), _LR),
    "mars": (_DIM, _int("model", "max_history", 10, 100, log=True), _LR, _L2),
    "dmn": (_DIM, _int("model", "hops", 1, 4), _LR),
    "nmrn": (_DIM, _int("model", "slots", 5, 50, log=True), _float("train", "margin", 0.1, 2.0), _LR),
    "demn": (_DIM, _int("model", "slots", 1, 8), _int("model", "visitors", 5, 50, log=True),
             _int("model", "top_r", 5, 50, log=True), _LR, _L2),
}


def search_space(model: str, path: str | Path | None = None) -> tuple[Param, ...]:
    """The model's default space with the parameters of the space file at ``path`` replacing
    (or adding to) it."""
    if model not in DEFAULT_SPACES:
        raise ConfigError(f"model {model!r} has no search space; known: {', '.join(DEFAULT_SPACES)}")
    space = {p.key: p for p in DEFAULT_SPACES[model]}
    if path is not None:
        space.update({p.key: p for p in read_space(model, path)})
    return tuple(space.values())


def read_space(model: str, path: str | Path) -> list[Param]:
    """The parameters of a ``SPACE.toml`` file, every key checked (see the module docstring)."""
    path = Path(path)
    tables = read_toml(path, "search-space")
    known = {"model": set(hyperparameters(model)), "train": {f.name for f in fields(TrainConfig)}}
    params = []
    for section, entries in tables.items():
        if section not in known or not isinstance(entries, dict):
            raise ConfigError(f"{path}: unknown table [{section}]; a search space has [model] and [train]")
        for name, entry in entries.items():
            where = f"{path}: {section}.{name}"
            if name not in known[section]:
                raise ConfigError(f"{where}: model {model!r} has no such {section} setting; "
                                  f"known: {', '.join(sorted(known[section]))}")
            params.append(_param(where, section, name, entry))
    return params


def _param(where: str, section: str, name: str, entry) -> Param:
    if not isinstance(entry, dict) or "type" not in entry:
        raise ConfigError(f"{where}: expected an inline table with a type, e.g. "
                          '{type = "float", low = 0.0, high = 1.0}')
    kind = entry["type"]
    if kind not in TYPE_KEYS:
        raise ConfigError(f"{where}: unknown type {kind!r}; choose from {', '.join(TYPE_KEYS)}")
    unknown = set(entry) - TYPE_KEYS[kind] - {"type"}
    if unknown:
        raise ConfigError(f"{where}: type {kind!r} takes no {', '.join(sorted(unknown))}; "
                          f"it takes {', '.join(sorted(TYPE_KEYS[kind]))}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        return Param(section, name, "categorical", choices=tuple(choices))
    return _range(where, section, name, "float" if kind == "log" else kind, entry, kind == "log")


def _range(where, section, name, kind, entry, log) -> Param:
    try:
        low, high = float(entry["low"]), float(entry["high"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where}: needs numbers low and high") from None
    log = bool(entry.get("log", log))
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: low must not exceed high, both finite (got {low}, {high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: an int range needs whole low and high, got {low}, {high}")
    step = entry.get("step")
    return Param(section, name, kind, low, high, log, None if step is None else float(step))


__all__ = ["Param", "DEFAULT_SPACES", "search_space", "read_space"]
