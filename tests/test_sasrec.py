"""SASRec oracles: values worked out from the paper's equations on tiny, hand-set weights, and the
properties its design promises (causality, positions matter, the window read at serving)."""

import math

import pytest
import torch

from memrec.errors import ConfigError
from memrec.models import build
from memrec.models.base import Query


def _sasrec(blocks: int, dim: int = 2, n_items: int = 3, **params):
    torch.manual_seed(0)
    return build("sasrec", 1, n_items, {"dim": dim, "blocks": blocks, "dropout": 0.0,
                                        "max_len": 4, **params}).eval()


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LN with unit gain and zero bias, the initial affine: (x − mean) / std (biased variance)."""
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-8)


def _set_embeddings(model, items, positions):
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor(items))
        model.position_embedding.weight[:len(positions)].copy_(torch.tensor(positions))


ITEMS = [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, -1.0]]
POSITIONS = [[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_no_blocks_scores_the_normalised_last_input_against_item_embeddings():
    # F_t = LN(√d M_i + P_t); r_j = ⟨F_t, M_j⟩ (eq. (9), shared item embeddings)
    model = _sasrec(blocks=0, dim=3)
    _set_embeddings(model, ITEMS, POSITIONS)
    # history (item 1, item 0): the last input is √3·(1, 0, 0) + P_1 = (1.732, 0, 1):
    # mean 0.9107, biased std 0.7099 → F = (1.1570, −1.2828, 0.1258)
    F = torch.tensor([1.1570, -1.2828, 0.1258])
    scores = model.score_all(Query(torch.tensor([0]), torch.tensor([[1, 0]]), torch.ones(1, 2, dtype=torch.bool)))
    assert torch.allclose(scores, (F @ torch.tensor(ITEMS).T)[None], atol=1e-3)


def _identity_block(model, dim: int):
    """One block whose projections are identities and whose feed-forward adds nothing."""
    block = model.blocks[0]
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        block.query.weight.copy_(torch.eye(dim))
        block.key_value.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)]))
        block.attention_out.weight.copy_(torch.eye(dim))
        for norm in (block.attention_norm, block.ffn_norm):
            norm.weight.fill_(1.0)
    return block


def test_one_block_attends_causally_with_the_normalised_query():
    # x_t = √3 M_{i_t} + P_t; q_t = LN(x_t); keys and values are x itself (the authors' code);
    # position 0 reads only x_0: y_0 = q_0 + x_0; position 1 reads softmax(q_1·x_s / √3) over s ≤ 1
    model = _sasrec(blocks=1, dim=3)
    _set_embeddings(model, ITEMS, POSITIONS)
    _identity_block(model, 3)
    r3 = math.sqrt(3)
    x0 = r3 * torch.tensor(ITEMS[0]) + torch.tensor(POSITIONS[0])
    x1 = r3 * torch.tensor(ITEMS[2]) + torch.tensor(POSITIONS[1])
    q0, q1 = _layer_norm(x0), _layer_norm(x1)
    w = torch.softmax(torch.stack([q1 @ x0, q1 @ x1]) / r3, 0)
    y0 = q0 + x0
    y1 = q1 + w[0] * x0 + w[1] * x1
    expected = _layer_norm(torch.stack([y0, y1]))              # the final norm
    states = model.prefix_states(torch.tensor([[0, 2]]), torch.ones(1, 2, dtype=torch.bool))[0]
    assert torch.allclose(states, expected, atol=1e-5)


def test_a_later_item_never_changes_an_earlier_position():
    model = _sasrec(blocks=2, dim=8, n_items=10, heads=2)
    mask = torch.ones(1, 4, dtype=torch.bool)
    a = model.prefix_states(torch.tensor([[1, 2, 3, 4]]), mask)
    b = model.prefix_states(torch.tensor([[1, 2, 3, 9]]), mask)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3], b[:, 3], atol=1e-4)


def test_order_matters_through_the_positions():
    model = _sasrec(blocks=1, dim=8, n_items=10)
    mask = torch.ones(1, 3, dtype=torch.bool)
    users = torch.tensor([0])
    forward = model.score_all(Query(users, torch.tensor([[1, 2, 3]]), mask))
    shuffled = model.score_all(Query(users, torch.tensor([[2, 1, 3]]), mask))
    assert not torch.allclose(forward, shuffled, atol=1e-4)


def test_a_long_history_is_read_as_its_latest_max_len_items():
    model = _sasrec(blocks=2, dim=8, n_items=10)                 # max_len 4
    users = torch.tensor([0])
    long = model.score_all(Query(users, torch.tensor([[9, 8, 1, 2, 3, 4]]), torch.ones(1, 6, dtype=torch.bool)))
    latest = model.score_all(Query(users, torch.tensor([[1, 2, 3, 4]]), torch.ones(1, 4, dtype=torch.bool)))
    assert torch.allclose(long, latest, atol=1e-5)
    states = model.prefix_states(torch.tensor([[9, 8, 1, 2, 3, 4, 0]]),
                                 torch.tensor([[True] * 6 + [False]]))
    assert torch.allclose(model.output(states[:, 5]), latest, atol=1e-5)


def test_heads_must_divide_the_dimension():
    with pytest.raises(ConfigError, match="heads"):
        _sasrec(blocks=1, dim=6, heads=4)
