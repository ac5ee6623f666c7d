"""The stateful-scorer contract, once for every registered model that declares it (DESIGN.md:
"encoding a whole sequence equals replaying it event by event").

For random padded histories: ``encode`` equals replaying ``update`` one event at a time, one user
at a time; scoring from the state equals ``score_all`` / ``score_items`` for the same history;
a state survives ``to_bytes`` / ``from_bytes``.
"""

import numpy as np
import pytest
import torch

from memrec.data.synthetic import SynthConfig, generate
from memrec.memory.state import ItemWindow
from memrec.models import REGISTRY, build
from memrec.models.base import Query
from memrec.models.capabilities import (AnonymousScorer, Explainer, HistoryScorer, MemoryEntry,
                                        NextItemPairwise, NextItemSoftmax, StatefulScorer)

#: small sizes so every model builds and scores in milliseconds
SMALL = {"ksr": {"dim": 8, "hidden": 12, "kg_dim": 6, "out_dim": 5, "kg": None},   # no KG: the ablation
         "stamp": {"dim": 8, "max_history": 4}, "stmp": {"dim": 8},
         "dmn": {"dim": 8, "max_history": 3}, "sasrec": {"dim": 8, "heads": 2, "max_len": 4}, "mars": {"dim": 8, "max_history": 4},
         "nmrn": {"dim": 8, "slots": 3, "scope": "per_user"},
         "demn": {"dim": 8, "slots": 3, "visitors": 4, "history": 5, "top_r": 3}}
STATEFUL = sorted(name for name, s in REGISTRY.items() if issubclass(s.cls, StatefulScorer))
#: the copy read (``model.repeat``) changes what a score reads (the slots' items too) and, for
#: RUM-I, the state: every stateful contract below runs on these variants as well
COPY_READ = [pytest.param("stamp", {**SMALL["stamp"], "repeat": True}, id="stamp+repeat"),
             pytest.param("stmp", {**SMALL["stmp"], "repeat": True}, id="stmp+repeat"),
             pytest.param("dmn", {**SMALL["dmn"], "repeat": True}, id="dmn+repeat"),
             pytest.param("rumi", {"dim": 8, "slots": 3, "repeat": True}, id="rumi+repeat"),
             pytest.param("rumi", {"dim": 8, "slots": 3, "query": "last", "repeat": True}, id="rumi-last+repeat"),
             pytest.param("demn", {**SMALL["demn"], "repeat": True}, id="demn+repeat")]
#: (registry name, parameters; None: SMALL's) of every stateful model and copy-read variant
VARIANTS = [pytest.param(name, None, id=name) for name in STATEFUL] + COPY_READ


def _copy_reads(names) -> list:
    """The copy-read variants of the models in ``names``."""
    return [p for p in COPY_READ if p.values[0] in names]


def test_every_model_with_memory_is_stateful():
    # the list: memory models and the sequential baselines keep a serialisable state
    assert {"rumi", "rumf", "ksr", "nmrn", "gru4rec", "sasrec", "fpmc", "stamp", "stmp", "dmn", "mars",
            "demn"} <= set(STATEFUL)


def _model(name: str, params: dict | None = None):
    torch.manual_seed(0)
    data = generate(SynthConfig(n_users=12, n_items=15, mean_length=6, seed=1))
    model = build(name, data.n_users, data.n_items, params if params is not None else SMALL.get(name, {}))
    model.prepare(data)
    with torch.no_grad():                  # memories that are non-empty before any new event
        if name == "nmrn":
            model.memory.normal_()
    return model.eval(), data.n_items


def _histories(n_items: int, seed: int, B: int = 6, L: int = 7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L                                                   # one full row, one short
    lengths[1] = 1
    mask = torch.arange(L)[None, :] < lengths[:, None]
    history = torch.randint(0, n_items, (B, L), generator=g) * mask  # right padding with 0
    return torch.arange(B), history, mask


def _replayed(model, user: torch.Tensor, items: torch.Tensor):
    """The serving path: one user, one event at a time."""
    state = model.init_state(user)
    for item in items:
        state = model.update(state, item.reshape(1))
    return state


def _assert_states_equal(a, b, atol=1e-5):
    if isinstance(a, ItemWindow):
        a, b = a.align(b)
    for name, x in a.tensors().items():
        y = b.tensors()[name]
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape, name
            assert torch.allclose(x.float(), y.float(), atol=atol, equal_nan=True), name


@pytest.mark.parametrize("name, params", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1])
@torch.no_grad()
def test_encode_equals_event_by_event_replay(name, params, seed):
    model, n_items = _model(name, params)
    users, history, mask = _histories(n_items, seed)
    batch = model.encode(users, history, mask)
    for b in range(len(users)):
        single = _replayed(model, users[b:b + 1], history[b][mask[b]])
        _assert_states_equal(batch.index(torch.tensor([b])), single)
        assert torch.allclose(model.score_state(batch.index(torch.tensor([b])), users[b:b + 1]),
                              model.score_state(single, users[b:b + 1]), atol=1e-5)


@pytest.mark.parametrize("name, params", VARIANTS)
@torch.no_grad()
def test_scores_from_the_state_equal_score_all(name, params):
    model, n_items = _model(name, params)
    users, history, mask = _histories(n_items, seed=2)
    if not isinstance(model, HistoryScorer):      # queries carry no history: the state is init's
        history, mask = history[:, :0], mask[:, :0]
    query = Query(users, history, mask)
    state = model.encode(users, history, mask)
    assert torch.allclose(model.score_state(state, users), model.score_all(query), atol=1e-5)
    items = torch.randint(0, n_items, (len(users), 4), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(model.score_state(state, users, items), model.score_items(query, items), atol=1e-5)
    assert torch.allclose(model.score_items(query, items), model.score_all(query).gather(1, items), atol=1e-5)


@pytest.mark.parametrize("name, params", VARIANTS)
@torch.no_grad()
def test_state_round_trips_through_bytes(name, params):
    model, n_items = _model(name, params)
    users, history, mask = _histories(n_items, seed=4)
    state = model.encode(users, history, mask)
    for b in range(len(users)):        # a store keeps one user's state
        row = state.index(torch.tensor([b]))
        back = model.state_from_bytes(row.to_bytes())
        assert type(back) is type(row)
        _assert_states_equal(row, back, atol=0.0)
        assert torch.equal(model.score_state(back, users[b:b + 1]), model.score_state(row, users[b:b + 1]))


@pytest.mark.parametrize("name, params", VARIANTS)
@torch.no_grad()
def test_a_new_event_changes_the_scores(name, params):
    # a state that ignored its events would pass the equalities above trivially
    model, n_items = _model(name, params)
    users = torch.tensor([3])
    before = model.encode(users, torch.tensor([[2, 5]]), torch.ones(1, 2, dtype=torch.bool))
    after = model.update(before, torch.tensor([7]))
    a, b = model.score_state(before, users), model.score_state(after, users)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()            # relative: STAMP's scale is tiny


def test_regression_stamp_max_history_applies_when_scoring_directly():
    # STAMP's session_state used the whole session although training and evaluation keep only
    # the last max_history clicks; scoring a long session differed from the trained path
    model, n_items = _model("stamp", {"dim": 8, "max_history": 3})
    history = torch.tensor([[1, 2, 3, 4, 5, 6]])
    mask = torch.ones_like(history, dtype=torch.bool)
    direct = model.score_all(Query(torch.tensor([-1]), history, mask))
    recent = model.score_all(Query(torch.tensor([-1]), history[:, -3:], mask[:, -3:]))
    trained_path = model.output(model.prefix_states(history, mask)[:, -1])
    assert torch.allclose(direct, recent, atol=1e-6)
    assert torch.allclose(direct, trained_path, atol=1e-5)


def test_state_bytes_reject_another_type_and_truncation():
    model, n_items = _model("gru4rec")
    state = model.init_state(torch.tensor([0]))
    data = state.to_bytes()
    with pytest.raises(ValueError, match="cannot be read as"):
        ItemWindow.from_bytes(data)
    with pytest.raises(ValueError, match="truncated"):
        model.state_from_bytes(data[:-4])
    with pytest.raises(ValueError, match="not a memrec state"):
        model.state_from_bytes(b"\x80\x04pickle")


def test_anonymous_stateful_models_need_no_user():
    for name in STATEFUL:
        cls = REGISTRY[name].cls
        if issubclass(cls, AnonymousScorer):
            model, n_items = _model(name)
            users = torch.tensor([-1, -1])
            state = model.encode(users, torch.tensor([[1, 2], [3, 0]]), torch.tensor([[True, True], [True, False]]))
            assert model.score_state(state, users).shape == (2, n_items)


# -- the training capabilities agree with the scoring path, prefix by prefix -----------------------
SOFTMAX = sorted(n for n, s in REGISTRY.items() if issubclass(s.cls, NextItemSoftmax))
PAIRWISE = sorted(n for n, s in REGISTRY.items() if issubclass(s.cls, NextItemPairwise))
EXPLAINERS = sorted(n for n, s in REGISTRY.items() if issubclass(s.cls, Explainer)
                    and n not in ("cmn",))            # CMN's explain is checked in test_cmn.py


@pytest.mark.parametrize("name, params", [(n, None) for n in SOFTMAX] + _copy_reads(SOFTMAX))
@torch.no_grad()
def test_prefix_states_score_like_the_prefix_alone(name, params):
    # no future event enters prefix t: position t scores what scoring the first t + 1 events does
    model, n_items = _model(name, params)
    users, history, mask = _histories(n_items, seed=5)
    for t in range(history.shape[1]):
        rows = mask[:, t]
        positions = torch.zeros_like(mask)
        positions[:, t] = rows
        prefix = Query(users[rows], history[rows, :t + 1], mask[rows, :t + 1])
        assert torch.allclose(model.prefix_outputs(history, mask, positions), model.score_all(prefix), atol=1e-5), t


@pytest.mark.parametrize("name, params", [(n, None) for n in PAIRWISE] + _copy_reads(PAIRWISE))
@torch.no_grad()
def test_prefix_scores_score_like_the_prefix_alone(name, params):
    model, n_items = _model(name, params)
    users, history, mask = _histories(n_items, seed=6)
    candidates = torch.randint(0, n_items, (*history.shape, 3), generator=torch.Generator().manual_seed(7))
    scores = model.prefix_scores(users, history, mask, candidates)
    for t in range(history.shape[1]):
        rows = mask[:, t]
        prefix = Query(users[rows], history[rows, :t + 1], mask[rows, :t + 1])
        assert torch.allclose(scores[rows, t], model.score_items(prefix, candidates[rows, t]), atol=1e-5), t


@pytest.mark.parametrize("name", EXPLAINERS)
@torch.no_grad()
def test_explanations_are_typed_entries_of_the_declared_kind(name):
    model, n_items = _model(name)
    users, history, mask = _histories(n_items, seed=8)
    query = Query(users[:1], history[:1], mask[:1])
    if not isinstance(model, HistoryScorer):
        query = Query.for_users(users[:1].numpy())
    items = torch.tensor([1, 4, 9])
    explained = model.explain(query, items)
    assert len(explained) == len(items)
    for entries in explained:
        assert entries, "an explanation names at least one memory entry"
        assert all(isinstance(e, MemoryEntry) and e.kind == model.explains for e in entries)
        weights = [e.weight for e in entries]
        assert weights == sorted(weights, reverse=True)           # strongest first


@pytest.mark.parametrize("name, params", _copy_reads(EXPLAINERS))
@torch.no_grad()
def test_copy_read_explanations_start_with_repeat_or_explore(name, params):
    from memrec.models.capabilities import MODE_KINDS
    model, n_items = _model(name, params)
    users, history, mask = _histories(n_items, seed=8)
    query = Query(users[:1], history[:1], mask[:1])
    remembered = history[0][mask[0]] % n_items
    items = torch.cat([remembered[-1:], torch.tensor([n_items - 1])])
    for item, (mode, *rest) in zip(items.tolist(), model.explain(query, items)):
        assert mode.kind in MODE_KINDS and 0.5 <= mode.weight <= 1.0
        # only a remembered item can be a repeat (of a slot), and the slot holds it
        if mode.kind == "repeat":
            assert item in remembered.tolist() and mode.id >= 0
        else:
            assert mode.id == -1
        assert rest and all(e.kind == model.explains for e in rest)


def _op_counts(fn) -> dict[str, int]:
    """How many times each aten operator runs in fn()."""
    from collections import Counter
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return dict(Counter(e.name for e in prof.events() if e.name.startswith("aten::")))


@pytest.mark.parametrize("name, params", COPY_READ)
@torch.no_grad()
def test_copy_read_full_ranking_is_one_product_plus_a_scatter_for_any_batch(name, params):
    # the same operators, as many times, for 2 users as for 6: no loop over users or items; and
    # the copy adds to the model's own full ranking one sparse write (index_put) on the slots
    model, n_items = _model(name, params)
    plain, _ = _model(name, {**params, "repeat": False})
    users, history, mask = _histories(n_items, seed=9)
    small, large = ([Query(users[:b], history[:b], mask[:b]) for b in (2, 6)])
    model.score_all(small), plain.score_all(small)       # fill what a model caches (DEMN's ẽ table) once
    assert _op_counts(lambda: model.score_all(small)) == _op_counts(lambda: model.score_all(large))
    counts, before = _op_counts(lambda: model.score_all(large)), _op_counts(lambda: plain.score_all(large))
    assert counts.get("aten::index_put", 0) == before.get("aten::index_put", 0) + 1, (counts, before)
