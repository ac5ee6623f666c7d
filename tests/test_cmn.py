"""CMN: the spec's hand oracles, ragged == padded, neighbourhood policies, item states,
explanations, seeded initialisation and checkpoint names."""

import numpy as np
import pytest
import torch
from torch import nn

from memrec.data.interactions import IdMap, Interactions
from memrec.memory.state import ItemWindow
from memrec.models.base import Query
from memrec.models.capabilities import Explainer, ItemStateScorer, MemoryEntry
from memrec.models.cmn import CMN, Neighbourhood


def oracle_model(hops):
    """CMN spec §1(i): m_u=(1,0), e_i=(0,1); neighbours' keys (1,0),(0,2), values the same;
    U = W = I, b = 0, v = (1,1); hop map W¹ = I, b¹ = 0."""
    model = CMN(3, 2, dim=2, hops=hops)
    with torch.no_grad():
        model.user_memory.weight[:] = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
        model.user_output.weight[:] = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 2.0]])
        model.item_memory.weight[:] = torch.tensor([[0.0, 1.0], [5.0, 5.0]])
        model.output.weight[:] = torch.cat([torch.eye(2), torch.eye(2)], dim=1)
        model.output.bias.zero_()
        model.out_vector.weight[:] = torch.tensor([[1.0, 1.0]])
        for layer in model.hop_maps:
            layer.weight[:] = torch.eye(2)
            layer.bias.zero_()
    # item 0's neighbourhood: users 1 and 2; item 1: nobody
    model.neighbour_indptr = torch.tensor([0, 2, 2])
    model.neighbour_users = torch.tensor([1, 2])
    return model


def score(model, user, item):
    return model.score_items(Query.for_users([user]), torch.tensor([[item]])).item()


def test_one_hop_hand_oracle():
    # scores (1, 2) → p = (0.268941, 0.731059), o = (0.268941, 1.462117); m_u⊙e_i = 0
    assert score(oracle_model(1), 0, 0) == pytest.approx(1.731059, abs=1e-6)


def test_two_hop_hand_oracle():
    # z¹ = ReLU(z⁰ + o¹) = (1.268941, 2.462117) → p² = (0.025202, 0.974798) → r = 1.974798
    assert score(oracle_model(2), 0, 0) == pytest.approx(1.974798, abs=1e-6)


def test_two_hop_hand_oracle_with_a_hop_map():
    # W¹ = diag(2, 0), b¹ = (0, -1): z¹ = ReLU(W¹z⁰ + o¹ + b¹) = ReLU((2, 0) + (0.268941, 1.462117)
    # + (0, -1)) = (2.268941, 0.462117) → scores (2.268941, 0.924234) → p² = (0.793263, 0.206737)
    # → o² = (0.793263, 0.413474) → r = 1.206737
    model = oracle_model(2)
    with torch.no_grad():
        model.hop_maps[0].weight[:] = torch.diag(torch.tensor([2.0, 0.0]))
        model.hop_maps[0].bias[:] = torch.tensor([0.0, -1.0])
    assert score(model, 0, 0) == pytest.approx(1.206737, abs=1e-6)


def test_padded_attention_gives_the_same_scores():
    ragged = oracle_model(3)
    padded = oracle_model(3)
    padded.attention = "padded"
    for user in range(3):
        assert score(ragged, user, 0) == pytest.approx(score(padded, user, 0), abs=1e-6)


def test_zero_values_reduce_to_a_gmf_like_output():
    model = oracle_model(1)
    with torch.no_grad():
        model.user_output.weight.zero_()
    m_u, e_i = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = torch.relu(m_u * e_i).sum().item()  # v·ReLU(U(m_u⊙e_i) + 0)
    assert score(model, 0, 0) == pytest.approx(expected)


def test_empty_neighbourhood_policies():
    model = oracle_model(1)
    # item 1 has no users: "self" reads the query user's own value c_0 = (9, 9) → o = (9, 9);
    # m_u⊙e_1 = (5, 0); output = ReLU((5,0) + (9,9)) → v·(14, 9) = 23
    assert score(model, 0, 1) == pytest.approx(23.0)
    model.empty_neighbourhood = "zero"
    assert score(model, 0, 1) == pytest.approx(5.0)


def test_exclude_self_removes_the_query_user():
    model = oracle_model(1)
    # user 1 is in N(0); with exclusion its memory holds only user 2 → o = c_2 = (0, 2)
    with_self = score(model, 1, 0)
    model.exclude_self = True
    m1_e0 = torch.tensor([1.0, 0.0]) * torch.tensor([0.0, 1.0])
    assert score(model, 1, 0) == pytest.approx(torch.relu(m1_e0 + torch.tensor([0.0, 2.0])).sum().item())
    assert score(model, 1, 0) != pytest.approx(with_self)


def test_neighbour_order_does_not_matter_and_prepare_builds_the_csr():
    train = Interactions(np.array([0, 1, 2, 2], np.int32), np.array([0, 0, 0, 1], np.int32),
                         IdMap.range(3), IdMap.range(2))
    model = CMN(3, 2, dim=4, hops=2)
    model.prepare(train)
    assert model.neighbour_indptr.tolist() == [0, 3, 4]
    assert model.neighbour_users.tolist() == [0, 1, 2, 2]
    before = score(model, 0, 0)
    model.neighbour_users = torch.tensor([2, 0, 1, 2])
    assert score(model, 0, 0) == pytest.approx(before, abs=1e-6)


@pytest.mark.parametrize("hops", [1, 3])
@pytest.mark.parametrize("policy", [dict(empty_neighbourhood="self"), dict(empty_neighbourhood="zero"),
                                    dict(exclude_self=True)])
def test_score_all_agrees_with_score_items(hops, policy):
    """The shared-layout full scorer (user groups, SpMM/SDDMM) and the item-chunked fallback
    both equal pair-by-pair scoring, including items nobody has (28, 29) and items in the
    user's own history (u ∈ N(i))."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = Interactions(rng.integers(0, 20, 300).astype(np.int32), rng.integers(0, 28, 300).astype(np.int32),
                         IdMap.range(20), IdMap.range(30))
    model = CMN(20, 30, dim=6, hops=hops, init_std=0.5, score_chunk_slots=600, **policy)
    model.prepare(train)
    q = Query.for_users([0, 5, 19, 7, 3])
    with torch.no_grad():
        full = model.score_all(q)
        direct = model.score_items(q, torch.arange(30).expand(5, -1))
    assert full.abs().max() > 0.1                       # not a trivially tiny comparison
    torch.testing.assert_close(full, direct, atol=1e-5, rtol=1e-5)


def test_explain_lists_neighbours_with_weights():
    model = oracle_model(1)
    assert isinstance(model, Explainer) and model.explains == "user"
    # one hop: p = softmax(1, 2) over users (1, 2); item 1 has nobody: "self" reads [u] = [0]
    top, cold = model.explain(Query.for_users([0]), torch.tensor([0, 1]))
    assert [(e.kind, e.id) for e in top] == [("user", 2), ("user", 1)]
    assert [e.weight for e in top] == pytest.approx([0.731059, 0.268941], abs=1e-6)
    assert cold == [MemoryEntry("user", 0, 1.0)]


def test_explain_names_the_last_hops_attention():
    # two hops: p² = (0.025202, 0.974798) (the 2-hop oracle), not hop 1's (0.268941, 0.731059)
    (entries,) = oracle_model(2).explain(Query.for_users([0]), torch.tensor([0]))
    assert [(e.id, e.weight) for e in entries] == [(2, pytest.approx(0.974798, abs=1e-6)),
                                                   (1, pytest.approx(0.025202, abs=1e-6))]


def test_explain_takes_one_request():
    with pytest.raises(ValueError, match="one request"):
        oracle_model(1).explain(Query.for_users([0, 1]), torch.tensor([0]))


def test_checkpoint_round_trip_resizes_neighbourhoods():
    import io
    train = Interactions(np.array([0, 1, 2], np.int32), np.array([0, 0, 1], np.int32),
                         IdMap.range(3), IdMap.range(2))
    model = CMN(3, 2, dim=4)
    model.prepare(train)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = CMN(3, 2, dim=4)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert score(fresh, 0, 0) == pytest.approx(score(model, 0, 0))


def test_only_dense_weights_are_regularised():
    model = CMN(3, 2, dim=4, hops=3)
    decayed, free = model.parameter_groups(0.1)
    assert decayed["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in decayed["params"]] == ["hop_maps.0.weight", "hop_maps.1.weight",
                                                         "output.weight", "out_vector.weight"]
    assert [names[id(p)] for p in free["params"]] == [
        "user_slots.key_table.weight", "user_slots.value_table.weight", "item_memory.weight",
        "hop_maps.0.bias", "hop_maps.1.bias", "output.bias"]


# -- seeded initialisation and checkpoint names ------------------------------------------------
def test_seeded_initial_weights_are_those_of_earlier_releases():
    """Regression: moving M and C into LearnedSlots must not change what a seed gives (runs
    before it reproduce): three N(0, 1) tables drawn M, C, E, then truncated normals in the
    same order, then the dense layers."""
    torch.manual_seed(0)
    model = CMN(7, 5, dim=3, hops=2, init_std=0.1)
    torch.manual_seed(0)
    tables = [nn.Embedding(7, 3), nn.Embedding(7, 3), nn.Embedding(5, 3)]
    for table in tables:
        nn.init.trunc_normal_(table.weight, std=0.1, a=-0.2, b=0.2)
    hop = nn.Linear(3, 3)
    nn.init.kaiming_normal_(hop.weight, nonlinearity="relu")
    for got, want in zip((model.user_memory, model.user_output, model.item_memory), tables):
        assert torch.equal(got.weight, want.weight)
    assert torch.equal(model.hop_maps[0].weight, hop.weight)
    assert model.user_slots.key_table is model.user_memory                     # keys = M
    assert model.user_slots.value_table is model.user_output                   # values = C


def test_checkpoints_with_the_old_parameter_names_load():
    train = Interactions(np.array([0, 1, 2], np.int32), np.array([0, 0, 1], np.int32),
                         IdMap.range(3), IdMap.range(2))
    model = CMN(3, 2, dim=4, init_std=0.5)
    model.prepare(train)
    renamed = {"user_slots.key_table.weight": "user_memory.weight",
               "user_slots.value_table.weight": "user_output.weight"}
    old_style = {renamed.get(k, k): v for k, v in model.state_dict().items()}
    assert "user_memory.weight" in old_style and "user_slots.key_table.weight" not in old_style
    fresh = CMN(3, 2, dim=4)
    fresh.load_state_dict(old_style)
    assert score(fresh, 0, 0) == pytest.approx(score(model, 0, 0))


# -- item states ------------------------------------------------------------------------------
def timed_train():
    """Events out of time order, a repeated pair (2, 0), and item 3 without users.

    time: 0      1      2      3      4      5      6
    pair: (1,0)  (2,1)  (0,1)  (2,0)  (0,0)  (2,0)  (1,2)    → N(0) = {0,1,2}, N(1) = {0,2},
                                                               N(2) = {1}, N(3) = {}
    """
    user = np.array([0, 2, 1, 1, 2, 0, 2], np.int32)
    item = np.array([0, 0, 2, 0, 1, 1, 0], np.int32)
    time = np.array([4, 5, 6, 0, 1, 2, 3], np.float64)
    return Interactions(user, item, IdMap.range(3), IdMap.range(4), timestamp=time)


def state_rows(state):
    return [row[m].tolist() for row, m in zip(state.users, state.mask)]


def test_declares_an_item_state():
    assert isinstance(CMN(3, 2, dim=4), ItemStateScorer) and CMN.item_state_type is Neighbourhood


def test_update_inserts_in_order_and_ignores_a_repeat():
    model = CMN(5, 3, dim=2)
    state = Neighbourhood(torch.tensor([[1, 4], [3, 0], [0, 0]]),
                          torch.tensor([[True, True], [True, False], [False, False]]))
    after = model.update_item_state(state, torch.tensor([2, 3, 4]))
    assert state_rows(after) == [[1, 2, 4], [3], [4]]           # insert; repeat (3 in N); empty
    assert after.users.tolist() == [[1, 2, 4], [3, 0, 0], [4, 0, 0]]     # padding is 0
    assert state_rows(model.update_item_state(after, torch.tensor([0, 3, 4]))) == [[0, 1, 2, 4], [3], [4]]


def test_replaying_the_events_in_time_order_builds_prepares_neighbourhoods():
    train = timed_train()
    prepared = CMN(3, 4, dim=2)
    prepared.prepare(train)
    items = torch.arange(4)
    built = prepared.init_item_state(items)
    assert state_rows(built) == [[0, 1, 2], [0, 2], [1], []]   # by hand (docstring above)
    state = CMN(3, 4, dim=2).init_item_state(items)             # before prepare: all empty
    assert state.users.shape == (4, 0)
    for t in np.argsort(train.timestamp):
        u, i = int(train.user[t]), int(train.item[t])
        state = prepared.update_item_state(state, torch.full((4,), u)).where(items == i, state)
    assert torch.equal(state.users, built.users) and torch.equal(state.mask, built.mask)


def random_model(**options):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = Interactions(rng.integers(0, 20, 300).astype(np.int32),
                         rng.integers(0, 28, 300).astype(np.int32), IdMap.range(20), IdMap.range(30))
    model = CMN(20, 30, dim=6, hops=3, init_std=0.5, **options)
    model.prepare(train)
    return model, train


@pytest.mark.parametrize("policy", [dict(), dict(empty_neighbourhood="zero"), dict(exclude_self=True),
                                    dict(attention="padded")])
def test_item_state_scores_equal_pair_scores(policy):
    model, _ = random_model(**policy)
    g = torch.Generator().manual_seed(1)
    users, items = torch.randint(0, 20, (200,), generator=g), torch.randint(0, 30, (200,), generator=g)
    assert bool((items >= 28).any())                              # items nobody has are included
    with torch.no_grad():
        direct = model.pair_scores(users, items)
        served = model.score_item_state(model.init_item_state(items), items, users)
    assert direct.abs().max() > 0.1
    torch.testing.assert_close(served, direct, atol=1e-6, rtol=0)


def test_item_state_survives_bytes():
    model, _ = random_model()
    items, users = torch.tensor([3, 29, 3, 7]), torch.tensor([0, 1, 2, 19])
    state = model.update_item_state(model.init_item_state(items), torch.tensor([5, 5, 0, 0]))
    back = Neighbourhood.from_bytes(state.to_bytes())
    with pytest.raises(ValueError, match="Neighbourhood"):
        ItemWindow.from_bytes(state.to_bytes())                  # the type travels with the bytes
    assert torch.equal(back.users, state.users) and torch.equal(back.mask, state.mask)
    with torch.no_grad():
        assert torch.equal(model.score_item_state(back, items, users),
                           model.score_item_state(state, items, users))


def test_an_event_changes_only_its_items_scores():
    """(u, i) joins N(i): every user's score of i moves, no other item's does; and the result
    is what a model prepared with the event in its training data scores."""
    model, train = random_model()
    items = torch.arange(30)
    i = 11
    u = min(set(range(20)) - set(state_rows(model.init_item_state(torch.tensor([i])))[0]))
    before = model.init_item_state(items)
    after = model.update_item_state(before, torch.full((30,), u)).where(items == i, before)
    with torch.no_grad():
        def all_scores(state):
            return torch.stack([model.score_item_state(state, items, torch.full((30,), v))
                                for v in range(20)])                          # [users, items]
        old, new = all_scores(before), all_scores(after)
        changed = (old != new).any(0)
        assert changed.tolist() == [k == i for k in range(30)]
        assert bool((old[:, i] != new[:, i]).all())                  # for every user, not only u
        grown = Interactions(np.append(train.user, u).astype(np.int32), np.append(train.item, i).astype(np.int32),
                             IdMap.range(20), IdMap.range(30))
        model.prepare(grown)
        torch.testing.assert_close(new, torch.stack([model.pair_scores(torch.full((30,), v), items)
                                                     for v in range(20)]), atol=1e-6, rtol=0)
