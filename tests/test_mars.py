"""MARS (reconstruction): the spec's §2(i) oracles — single-slot read, uniform read, padding and
permutation invariance, leave-self-out — full ranking == pair scoring, memory building,
explanations, training on planted data."""

import io

import numpy as np
import pytest
import torch

from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate
from memrec.evaluation import Evaluator
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.base import Query
from memrec.memory.read import candidate_read
from memrec.models.mars import MARS
from memrec.training.config import TrainConfig
from memrec.training.trainer import Trainer


def _set(table, rows):
    with torch.no_grad():
        table.weight.copy_(torch.tensor(rows, dtype=torch.float32))


def bare_model(n_items=4, **options):
    """d = 2, no MLP, no p_u: the score is ⟨Σ_j p_j v_j, q_i⟩, computable by hand."""
    model = MARS(2, n_items, dim=2, mlp_layers=0, user_embedding=False, **options).eval()
    _set(model.item_query, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]][:n_items])
    _set(model.item_key, [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]][:n_items])
    _set(model.item_value, [[3.0, 1.0], [-1.0, 2.0], [0.5, 0.5], [1.0, 1.0]][:n_items])
    return model


def set_memory(model, rows):
    """Memories as lists of item ids (ragged), right-padded with garbage item 0."""
    width = max(map(len, rows))
    model.memory_items = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    model.memory_mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])


def scores(model, user, items):
    return model.score_items(Query.for_users([user]), torch.tensor([items]))[0]


# -- oracles ---------------------------------------------------------------------------------------
def test_single_slot_memory_reads_that_items_value_for_every_target():
    model = bare_model()
    set_memory(model, [[1], [0]])
    # user 0 remembers item 1 only: x_ui = v_1 = (-1, 2) for any i ≠ 1 → r = ⟨v_1, q_i⟩
    got = scores(model, 0, [0, 2, 3])
    torch.testing.assert_close(got, torch.tensor([-1.0, 1.0, -4.0]))


def test_equal_logits_give_the_mean_of_the_values():
    model = bare_model()
    set_memory(model, [[0, 1, 2], [0]])
    _set(model.item_key, [[1.0, 1.0]] * 4)        # equal keys: every logit the same
    mean = torch.tensor([[3.0, 1.0], [-1.0, 2.0], [0.5, 0.5]]).mean(0)
    expected = (mean * torch.tensor([2.0, -1.0])).sum()
    torch.testing.assert_close(scores(model, 0, [3]), expected[None])
    x, weights = model._read(torch.tensor([0]), torch.tensor([[3]]), model.init_state(torch.tensor([0])))
    torch.testing.assert_close(weights[0, 0], torch.full((3,), 1 / 3))


def test_hand_computed_dot_attention():
    model = bare_model()
    set_memory(model, [[0, 1], [0]])
    # target 2: q = (1, 1); logits ⟨q, k_0⟩ = 1, ⟨q, k_1⟩ = 2 → p = (0.268941, 0.731059)
    # x = 0.268941·(3, 1) + 0.731059·(−1, 2) = (0.075764, 1.731059) → r = 1.806823
    assert scores(model, 0, [2]).item() == pytest.approx(1.806823, abs=1e-5)


def test_user_embedding_and_mlp_enter_as_documented():
    model = MARS(1, 3, dim=2, mlp_layers=2).eval()
    _set(model.item_query, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    _set(model.item_key, [[0.0, 0.0]] * 3)
    _set(model.item_value, [[2.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
    _set(model.user, [[1.0, -1.0]])
    with torch.no_grad():
        first, second = model.deep[0], model.deep[2]
        first.weight.copy_(torch.eye(2)); first.bias.copy_(torch.tensor([0.0, -1.0]))
        second.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]])); second.bias.zero_()
    set_memory(model, [[0, 1]])
    # target 2: uniform read (keys 0) → (1, 2); + p_u → (2, 1); layer 1 → ReLU((2, 0)) = (2, 0);
    # layer 2 → (2, 0); ⟨(2, 0), q_2 = (1, 1)⟩ = 2
    assert scores(model, 0, [2]).item() == pytest.approx(2.0)


def test_additive_attention_by_hand():
    model = bare_model(attention="additive", attention_hidden=1)
    with torch.no_grad():
        model.scorer.query_proj.weight.copy_(torch.tensor([[1.0, 0.0]]))
        model.scorer.key_proj.weight.copy_(torch.tensor([[0.0, 1.0]]))
        model.scorer.key_proj.bias.zero_()
        model.scorer.out.weight.copy_(torch.tensor([[2.0]]))
    set_memory(model, [[0, 1], [0]])
    # target 2, q = (1, 1): s_j = 2·tanh(q_1 + k_j2) = 2·tanh(1), 2·tanh(3)
    s = 2 * torch.tanh(torch.tensor([1.0, 3.0]))
    p = torch.softmax(s, 0)
    x = p[0] * torch.tensor([3.0, 1.0]) + p[1] * torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(scores(model, 0, [2]), x.sum()[None])


# -- invariances -----------------------------------------------------------------------------------
def random_model(seed=0, **options):
    torch.manual_seed(seed)
    return MARS(3, 12, dim=5, init_std=0.5, **options).eval()


@pytest.mark.parametrize("attention", ["dot", "additive"])
def test_padding_slots_never_change_a_score(attention):
    model = random_model(attention=attention)
    set_memory(model, [[1, 4, 7], [2], [3, 5]])
    before = model.score_all(Query.for_users([0, 1, 2]))
    # widen the memory with garbage items behind the mask
    model.memory_items = torch.cat([model.memory_items, torch.full((3, 4), 9)], 1)
    model.memory_mask = torch.cat([model.memory_mask, torch.zeros(3, 4, dtype=torch.bool)], 1)
    torch.testing.assert_close(model.score_all(Query.for_users([0, 1, 2])), before)


@pytest.mark.parametrize("attention", ["dot", "additive"])
def test_the_order_of_the_memory_does_not_matter(attention):
    model = random_model(attention=attention)
    set_memory(model, [[1, 4, 7, 10], [2], [3]])
    before = model.score_all(Query.for_users([0]))
    set_memory(model, [[10, 7, 1, 4], [2], [3]])
    torch.testing.assert_close(model.score_all(Query.for_users([0])), before)


# -- leave-self-out --------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["dot", "additive"])
def test_a_scored_item_never_reads_itself(attention):
    """The score of j is the same whether or not j is in H_u (spec §2(i))."""
    model = random_model(attention=attention)
    set_memory(model, [[1, 4, 7], [2], [3]])
    without = scores(model, 0, [5, 2])
    set_memory(model, [[1, 5, 4, 7, 5], [2], [3]])                # j = 5 appended, twice
    torch.testing.assert_close(scores(model, 0, [5])[0], without[0])
    assert not torch.allclose(scores(model, 0, [2]), without[1:])  # other items do read it
    model.leave_self_out = False                                  # the ablation reads it
    assert not torch.allclose(scores(model, 0, [5])[0], without[0])


def test_a_memory_of_only_the_target_reads_nothing():
    model = bare_model()
    set_memory(model, [[2, 2], [0]])
    assert scores(model, 0, [2]).item() == 0.0                    # empty read, no p_u, no MLP
    (entries,) = model.explain(Query.for_users([0]), torch.tensor([2]))
    assert entries == []


# -- full ranking, memory, explanations -------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"attention": "additive"}, {"tie_key_value": True},
                                     {"user_embedding": False, "mlp_layers": 0}])
def test_score_all_equals_pair_scoring_over_blocks_and_chunks(options):
    model = random_model(**options)
    set_memory(model, [[1, 4, 7, 11], [2], []])
    q = Query.for_users([0, 1, 2, 0])
    with torch.no_grad():
        full = model.score_state(model.init_state(q.users), q.users, users_per_block=3)
        direct = model.score_items(q, torch.arange(12).expand(4, -1))
    assert full.abs().max() > 0.05
    torch.testing.assert_close(full, direct, atol=1e-6, rtol=1e-5)


def test_candidate_read_matches_a_per_candidate_loop():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    mask = torch.rand(2, 3, 5, generator=g) > 0.3
    reads, weights = candidate_read(q, k, v, mask)
    for b in range(2):
        for c in range(3):
            s = (k[b] @ q[b, c]).masked_fill(~mask[b, c], float("-inf"))
            p = torch.softmax(s, 0).nan_to_num(0.0)
            torch.testing.assert_close(weights[b, c], p)
            torch.testing.assert_close(reads[b, c], p @ v[b])


def test_prepare_keeps_the_most_recent_items_and_checkpoints_resize_them():
    train = Interactions(np.array([0, 0, 0, 0, 1], np.int32), np.array([5, 1, 2, 3, 4], np.int32),
                         IdMap.range(2), IdMap.range(6),
                         timestamp=np.array([4, 1, 2, 3, 9], np.int64))
    model = MARS(2, 6, dim=3, max_history=3)
    model.prepare(train)
    assert model.memory_items.tolist() == [[2, 3, 5], [4, 0, 0]]
    assert model.memory_mask.tolist() == [[True] * 3, [True, False, False]]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = MARS(2, 6, dim=3, max_history=3)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(scores(fresh.eval(), 0, [0, 1]), scores(model.eval(), 0, [0, 1]))


def test_explain_ranks_the_attended_history_items():
    model = bare_model()
    set_memory(model, [[0, 1], [0]])
    (entries,) = model.explain(Query.for_users([0]), torch.tensor([2]))
    assert [(e.kind, e.id) for e in entries] == [("item", 1), ("item", 0)]
    assert [e.weight for e in entries] == pytest.approx([0.731059, 0.268941], abs=1e-6)


def test_bad_options_are_config_errors():
    with pytest.raises(ValueError, match="attention"):
        MARS(2, 3, attention="cosine")
    with pytest.raises(ValueError, match="max_history"):
        MARS(2, 3, max_history=0)
    with pytest.raises(ConfigError, match="must be an integer"):
        build("mars", 2, 3, {"max_history": 2.5})
    with pytest.raises(ConfigError, match="model 'mars': max_history"):
        build("mars", 2, 3, {"max_history": 0})


# -- learning ---------------------------------------------------------------------------------------
def test_training_beats_popularity_on_planted_clusters():
    """Users draw items from planted clusters; MARS's item-level attention should rank the
    held-out item far above what popularity does (full ranking, leave-one-out)."""
    torch.manual_seed(0)
    data = generate(SynthConfig(n_users=120, n_items=200, mean_length=20, seed=3))
    split = leave_one_out(data)
    config = TrainConfig(epochs=8, lr=0.01, batch_size=256, n_negatives=4, patience=0, seed=0)
    model = build("mars", data.n_users, data.n_items, {"dim": 16, "mlp_layers": 1})
    Trainer(config, progress=False, echo=lambda line: None).fit(model, split)
    pop = build("pop", data.n_users, data.n_items)
    pop.fit_closed_form(split.train)
    evaluator = Evaluator(split, "test", protocols=("full",))
    mars_hr = evaluator.evaluate(model)["full"]["HR@10"]
    pop_hr = evaluator.evaluate(pop)["full"]["HR@10"]
    assert mars_hr > pop_hr + 0.05, (mars_hr, pop_hr)


# -- the command line -----------------------------------------------------------------------------
def test_mars_trains_from_the_cli_with_its_shipped_config_and_explains(tmp_path):
    from pathlib import Path

    from click.testing import CliRunner

    from memrec.cli import main
    from memrec.data.synthetic import write_csv

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    data = tmp_path / "synth.csv"
    write_csv(generate(SynthConfig(n_users=60, n_items=150, mean_length=12, seed=2)), data)
    config = Path(__file__).resolve().parents[1] / "configs" / "mars_ml-100k.toml"
    out = tmp_path / "mars"
    result = run("train", "mars", "--data", data, "--config", config, "--out", out, "--epochs", 1,
                 "--set", "model.dim=8", "--set", "model.max_history=5", "--no-progress")
    assert result.exit_code == 0, result.output
    result = run("recommend", out, "--user", "3", "-k", "2", "--explain")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "attended:" in line]
    assert len(lines) == 2 and "item " in lines[0]
    for line in lines:   # a distribution over at most 5 remembered items, strongest first
        weights = [float(p.split("(")[1].rstrip(")")) for p in line.split("attended:")[1].split(",")]
        assert len(weights) <= 5 and weights == sorted(weights, reverse=True)
        assert sum(weights) == pytest.approx(1.0, abs=0.02)
    bad = run("train", "mars", "--data", data, "--out", tmp_path / "bad",
              "--set", "model.attention=\"cosine\"", "--no-progress")
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("memrec: error: model 'mars': attention")


def test_recall_at_m_never_falls_as_m_grows_on_the_papers_protocol():
    """Spec §2(i): Recall@M is monotone in M (per-user random split, full ranking)."""
    from memrec.data.splits import random_ratio
    data = generate(SynthConfig(n_users=40, n_items=120, mean_length=15, seed=5))
    split = random_ratio(data, test_frac=0.2, valid_frac=0.1)
    model = build("mars", data.n_users, data.n_items, {"dim": 8, "init_std": 0.5})
    model.prepare(split.train)
    ks = (20, 40, 60, 80, 100)
    metrics = Evaluator(split, "test", protocols=("full",), ks=ks).evaluate(model)["full"]
    recalls = [metrics[f"Recall@{k}"] for k in ks]
    assert recalls == sorted(recalls) and recalls[0] < recalls[-1] <= 1.0
