"""CMN: the spec's hand oracles, ragged == padded, neighbourhood policies, explanations."""

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.models.base import Query
from memrec.models.cmn import CMN


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
    (neighbours,) = model.explain(0, torch.tensor([0]))
    assert [u for u, _ in neighbours] == [2, 1]
    assert [w for _, w in neighbours] == pytest.approx([0.731059, 0.268941], abs=1e-6)


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
    assert len(decayed["params"]) == 2 + 2  # two hop maps, output, v
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("memory" in names[id(p)] or "output" in names[id(p)] or "bias" in names[id(p)]
               for p in free["params"])
