"""The model registry: lower-case paper acronyms → model classes, one line of summary each.

An explicit dict (no lookups by concatenated names). Hyper-parameters are the classes' keyword
arguments; ``build`` checks a config's keys against the constructor's signature.

Two kinds of model are registered, and each spec says which data it trains on (``data``), so
which sizes its constructor takes first: recommenders (:class:`~.base.Model`) are built from a
dataset's ``(n_users, n_items)`` by :func:`build`; knowledge-graph embeddings
(:class:`~.base.KnowledgeGraphEmbedding`, TransE) from a graph's ``(n_entities, n_relations)``
by :func:`build_graph_model`. Either function refuses the other kind with a clear error.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass, field

from ..errors import ConfigError
from .base import KnowledgeGraphEmbedding, Query, Model
from .baselines.bprmf import BPRMF
from .baselines.ease import EASE
from .baselines.fpmc import FPMC
from .baselines.gru4rec import GRU4Rec
from .baselines.sasrec import SASRec
from .baselines.itemknn import ItemKNN
from .baselines.pop import Popularity
from .baselines.recency import SessionRecency
from .baselines.sknn import SKNN
from .baselines.stan import STAN
from .baselines.vsknn import VSKNN
from .baselines.rp3beta import RP3Beta
from .cmn import CMN
from .demn import DEMN
from .dmn import PurchaseDMN
from .gmf import GMF
from .ksr import KSR
from .mars import MARS
from .nmrn import NMRN
from .rum import RUMFeature, RUMItem
from .stamp import STAMP, STMP
from .transe import TransE


#: what a model trains on → the data-derived sizes its constructor takes, in order
DATA_SIZES = {"interactions": ("n_users", "n_items"),
              "knowledge_graph": ("n_entities", "n_relations")}


@dataclass(frozen=True)
class ModelSpec:
    cls: type[Model] | type[KnowledgeGraphEmbedding]
    summary: str
    #: training settings this model needs unless the user overrides them (``[train]`` keys)
    train_defaults: dict = field(default_factory=dict)
    #: ``[data]`` settings this model needs unless the user overrides them
    data_defaults: dict = field(default_factory=dict)
    #: reads TransE vectors of the dataset's knowledge graph (``model.kg``, ``model.transe``):
    #: ``memrec train`` trains or reuses them first (:mod:`memrec.ksr_knowledge`)
    reads_transe: bool = False

    @property
    def data(self) -> str:
        """What it trains on (a key of :data:`DATA_SIZES`), from the class it is: the triples of
        a knowledge graph (:class:`KnowledgeGraphEmbedding`) or user × item interactions."""
        return "knowledge_graph" if issubclass(self.cls, KnowledgeGraphEmbedding) else "interactions"

    @property
    def sizes(self) -> tuple[str, str]:
        """Names of the data-derived sizes the constructor takes first."""
        return DATA_SIZES[self.data]


#: STAMP's official training recipe (config/nn_param.conf): Adam 0.003, 512 prefixes per batch,
#: per-tensor clipping at 150, full softmax; P@20 (= HR@20) chosen on validation sessions
_SESSION_DEFAULTS = {"loss": "softmax", "optimizer": "adam", "lr": 3e-3, "batch_size": 512,
                     "clip_grad_norm": 150.0, "clip_per_tensor": True, "epochs": 10,
                     "valid_metric": "HR@20", "eval_batch_size": 512}

#: next-item training on user sequences with sampled negatives (RUM's pointwise loss, FPMC's
#: S-BPR): Adam 0.001, every prefix of a user's training sequence predicts its next item
_USER_SEQUENCE_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "batch_size": 1024, "epochs": 50,
                           "patience": 5, "n_negatives": 1}

REGISTRY: dict[str, ModelSpec] = {
    "pop": ModelSpec(Popularity, "Popularity: items ranked by training interaction count"),
    "itemknn": ModelSpec(ItemKNN, "ItemKNN: shrunk-cosine item neighbourhood (Sarwar 2001; Dacrema 2019)"),
    "rp3beta": ModelSpec(RP3Beta, "RP3beta: 3-step random walk, popularity-penalised (Paudel 2017)"),
    "ease": ModelSpec(EASE, "EASE^R: closed-form shallow item autoencoder (Steck 2019)"),
    "bprmf": ModelSpec(BPRMF, "BPR-MF: matrix factorisation with BPR loss (Rendle 2009)",
                       {"loss": "bpr", "n_negatives": 1, "lr": 1e-3, "epochs": 50}),
    "gmf": ModelSpec(GMF, "GMF: pairwise generalised MF, ReLU output (NCF 2017; CMN's pretraining)",
                     {"loss": "bpr", "n_negatives": 4, "lr": 1e-3, "batch_size": 128, "epochs": 15}),
    "cmn": ModelSpec(CMN, "CMN: collaborative memory network, multi-hop over item neighbourhoods (Ebesu 2018)",
                     {"loss": "bpr", "n_negatives": 4, "batch_size": 128, "optimizer": "rmsprop",
                      "lr": 1e-3, "momentum": 0.9, "rmsprop_decay": 0.9, "weight_decay": 0.1,
                      "clip_grad_norm": 5.0, "clip_per_tensor": True,
                      "sample_only_seen_items": True, "epochs": 30}),
    "fpmc": ModelSpec(FPMC, "FPMC: MF plus a factorised first-order item transition, S-BPR (Rendle 2010)",
                      {**_USER_SEQUENCE_DEFAULTS, "loss": "bpr"}),
    "gru4rec": ModelSpec(GRU4Rec, "GRU4Rec: a GRU over the item sequence, cross-entropy over all items (Hidasi 2016/2018)",
                         {**_USER_SEQUENCE_DEFAULTS, "loss": "softmax"}),
    "sasrec": ModelSpec(SASRec, "SASRec: causal self-attention over the latest items, full cross-entropy (Kang 2018; Klenitskiy 2023)",
                        {**_USER_SEQUENCE_DEFAULTS, "loss": "softmax", "epochs": 200, "patience": 10,
                         "adam_beta2": 0.98}),
    "rumi": ModelSpec(RUMItem, "RUM-I: attention over the user's K latest items, merged with p_u (Chen 2018)",
                      {**_USER_SEQUENCE_DEFAULTS, "loss": "bce"}),
    "rumf": ModelSpec(RUMFeature, "RUM-F: K feature slots per user, erase-add writes, merged with p_u (Chen 2018)",
                      {**_USER_SEQUENCE_DEFAULTS, "loss": "bce"}),
    "ksr": ModelSpec(KSR, "KSR: GRU plus a key-value memory of KG relations with TransE vectors (Huang 2018)",
                     {**_USER_SEQUENCE_DEFAULTS, "loss": "bpr", "n_negatives": 10,
                      "sampler": "popularity", "pretrain_epochs": 20}, reads_transe=True),
    # session baselines: fitted on the training sessions, so a refit after validation only adds
    # the validation sessions (the most recent ones, which neighbourhoods need most)
    "recency": ModelSpec(SessionRecency, "Repeat-by-recency: the session's items, most recent first, then popularity",
                         {"refit": True}),
    "sknn": ModelSpec(SKNN, "SKNN: the k most similar recent training sessions vote (Jannach 2017)", {"refit": True}),
    "vsknn": ModelSpec(VSKNN, "V-SKNN: session kNN with linearly decaying click weights (Ludewig 2018)", {"refit": True}),
    "stan": ModelSpec(STAN, "STAN: sequence- and time-aware session neighbourhood (Garg 2019)", {"refit": True}),
    "stamp": ModelSpec(STAMP, "STAMP: session clicks read by attention, last click + session mean (Liu 2018)",
                       _SESSION_DEFAULTS),
    "stmp": ModelSpec(STMP, "STMP: STAMP without attention, the paper's ablation (Liu 2018)",
                      _SESSION_DEFAULTS),
    "mars": ModelSpec(MARS, "MARS: target-item attention over the user's own items, deep MLP, BPR (Zheng 2018; reconstruction)",
                      {"loss": "bpr", "n_negatives": 4, "optimizer": "adam", "lr": 1e-3,
                       "batch_size": 256, "epochs": 50, "patience": 5}),
    "dmn": ModelSpec(PurchaseDMN, "Purchase DMN: multi-hop memory over a session's typed events, next purchase (Gligorijevic 2018; reconstruction)",
                     {**_SESSION_DEFAULTS, "lr": 1e-3, "clip_grad_norm": 0.0, "clip_per_tensor": False}),
    "nmrn": ModelSpec(NMRN, "NMRN: key-value memory written by every event, Euclidean scores, GAN negatives (Wang 2018)",
                      {"loss": "hinge", "margin": 1.0, "n_negatives": 1, "sampler": "adversarial",
                       "optimizer": "adam", "lr": 1e-3, "batch_size": 256, "epochs": 20, "patience": 3}),
    "demn": ModelSpec(DEMN, "DEMN: item visitors, neighbours' memories, a time-gated slot write and a retrieved history (our design, specs/demn.md)",
                      {**_USER_SEQUENCE_DEFAULTS, "loss": "bpr", "n_negatives": 4, "batch_size": 256,
                       "epochs": 30}),
    # the settings of the former standalone TransE trainer: margin ranking loss (hinge on −d), one
    # corrupted triple per true one, filtered validation MRR every 10 epochs, 5 % / 5 % held out
    "transe": ModelSpec(TransE, "TransE: knowledge-graph embedding, relations as translations (Bordes 2013); KSR's knowledge vectors",
                        {"loss": "hinge", "margin": 1.0, "n_negatives": 1, "optimizer": "adam", "lr": 1e-3,
                         "batch_size": 1024, "epochs": 100, "eval_every": 10, "patience": 3,
                         "eval_batch_size": 512, "valid_metric": "MRR"},
                        data_defaults={"test_frac": 0.05, "valid_frac": 0.05}),
}


def spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def hyperparameters(name: str) -> dict[str, inspect.Parameter]:
    """The model's keyword hyper-parameters (constructor arguments after the data sizes)."""
    params = inspect.signature(spec(name).cls.__init__).parameters
    return {k: p for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


#: what a hyper-parameter of each annotated type accepts, for error messages
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_REJECT = object()   # _convert's "does not fit" (None is a value)


def _convert(value, kind: type):
    """``value`` as ``kind`` (bool, int, float or str), or ``_REJECT``. An integral float is an
    integer (TOML and JSON may write 8 as 8.0); an integer is a number; a bool is neither."""
    if kind is bool:
        return value if isinstance(value, bool) else _REJECT
    if isinstance(value, bool):
        return _REJECT
    if kind is int:
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, float) and value.is_integer() else _REJECT
    if kind is float:
        return float(value) if isinstance(value, (int, float)) else _REJECT
    if kind is str:
        return value if isinstance(value, str) else _REJECT
    return value if isinstance(value, kind) else _REJECT


def _accepted_types(annotation, default) -> tuple[tuple[type, ...], bool] | None:
    """(the types a hyper-parameter accepts, whether it accepts None) from its annotation
    (``int``, ``float | None``, ``Optional[str]``, ...); an unannotated one goes by its default's
    type. None: nothing to check against."""
    if annotation is inspect.Parameter.empty:
        if default is inspect.Parameter.empty:
            return None
        return ((type(default),), False) if default is not None else None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    nullable = type(None) in members
    kinds = tuple(m for m in members if m is not type(None))
    if not all(isinstance(k, type) for k in kinds):
        return None                  # e.g. Literal[...]: the constructor checks it
    return kinds, nullable


def check_params(name: str, params: dict) -> dict:
    """Validate ``params`` against the constructor: unknown keys are errors, and every value
    must fit its parameter's annotation (``int``, ``float``, ``bool``, ``str``, ``X | None``).

    Returns a new dict of converted values: an integral float for an ``int`` becomes an int, an
    int for a ``float`` a float. A parameter that accepts None takes ``None`` (Python, and
    ``--set model.KEY=none``, see :func:`memrec.training.config.parse_override`) or the string
    ``"none"`` (a config file: TOML has no null; so such a parameter cannot take the literal
    string "none"). Errors are one-line :class:`ConfigError` s naming ``model.KEY``.
    """
    known = hyperparameters(name)
    try:
        hints = typing.get_type_hints(spec(name).cls.__init__)
    except (NameError, TypeError):   # an annotation that cannot be resolved: defaults decide
        hints = {}
    checked = {}
    for key, value in params.items():
        if key not in known:
            raise ConfigError(f"model {name!r} has no parameter {key!r}; "
                              f"its parameters: {', '.join(known) or '(none)'}")
        accepted = _accepted_types(hints.get(key, inspect.Parameter.empty), known[key].default)
        if accepted is None:
            checked[key] = value
            continue
        kinds, nullable = accepted
        if nullable and (value is None or (isinstance(value, str) and value.lower() == "none")):
            checked[key] = None
            continue
        for kind in kinds:
            converted = _convert(value, kind)
            if converted is not _REJECT:
                checked[key] = _in_range(name, key, converted)
                break
        else:
            wanted = " or ".join([_KINDS.get(k, k.__name__) for k in kinds] + ["none"] * nullable)
            raise ConfigError(f"model.{key} must be {wanted}, got {'none' if value is None else repr(value)}"
                              f" (model {name!r})")
    return checked


def effective_params(name: str, params: dict) -> dict:
    """Every hyper-parameter the model is built with: its defaults, then ``params``."""
    defaults = {k: p.default for k, p in hyperparameters(name).items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **params}


def _in_range(name: str, key: str, value):
    """Sizes, counts and rates are never negative and never NaN or infinite: refused here, in
    one line naming the key, rather than deep inside torch."""
    bad = (isinstance(value, int) and not isinstance(value, bool) and value < 0) or \
        (isinstance(value, float) and (not math.isfinite(value) or value < 0))
    if bad:
        raise ConfigError(f"model.{key} must be a non-negative finite number, got {value!r} (model {name!r})")
    return value


def build(name: str, n_users: int, n_items: int, params: dict | None = None) -> Model:
    """Construct a registered recommender for a dataset's sizes."""
    return _construct(name, "interactions", n_users, n_items, params)


def build_graph_model(name: str, n_entities: int, n_relations: int,
                      params: dict | None = None) -> KnowledgeGraphEmbedding:
    """Construct a registered knowledge-graph embedding for a graph's sizes."""
    return _construct(name, "knowledge_graph", n_entities, n_relations, params)


_DATA_WORDS = {"interactions": "user × item interactions", "knowledge_graph": "a knowledge graph's triples"}


def _construct(name: str, data: str, first: int, second: int, params: dict | None):
    model_spec = spec(name)
    if model_spec.data != data:
        # e.g. TransE asked for (n_users, n_items): it would silently embed users as entities
        raise ConfigError(f"model {name!r} is built from {', '.join(model_spec.sizes)} and trains on "
                          f"{_DATA_WORDS[model_spec.data]}, not on {_DATA_WORDS[data]}"
                          + (f" (memrec train {name} --data KG)" if model_spec.data == "knowledge_graph" else ""))
    params = check_params(name, dict(params or {}))
    try:
        return model_spec.cls(first, second, **params)
    except ConfigError:
        raise
    except ValueError as e:      # a constructor's check of an option (scope, query, ...)
        raise ConfigError(f"model {name!r}: {e}") from None


__all__ = ["REGISTRY", "ModelSpec", "DATA_SIZES", "Query", "Model", "KnowledgeGraphEmbedding",
           "build", "build_graph_model", "spec", "hyperparameters", "check_params", "effective_params"]
