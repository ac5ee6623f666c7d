"""KSR: hand-computed write and read oracles, the fused gated scan against the step-by-step
unroll (values and gradients), streaming == batch for both variants, unlinked items and
padding leave the memory alone, the pretraining recipe loads TransE and BPR vectors, frozen
tables stay frozen, checkpoints resize, and the CLI runs TransE → KSR → recommend --explain --plot."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import leave_one_out
from memrec.memory.state import MemoryState
from memrec.memory.write import gated_unroll, gated_write, unroll
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.ksr import KSR
from memrec.recommender import Recommender

from .test_knowledge import write_recbole


def tiny(variant="official", **kw):
    torch.manual_seed(0)
    params = dict(variant=variant, dim=6, hidden=5, kg_dim=2, out_dim=4, relations=3, dropout=0.0, kg=None)
    params.update(kw)
    return KSR(4, 12, **params).eval()


def hand_knowledge(model):
    """e_item = (1, 0) for every item, one relation r = (0, 1) (the spec's §2.8 hand case)."""
    model.load_knowledge(torch.tensor([[1.0, 0.0]]).repeat(12, 1), torch.ones(12, dtype=torch.bool),
                         torch.tensor([[0.0, 1.0]]), ["film.genre"])


# -- write oracles -----------------------------------------------------------------------------
def test_paper_write_hand_case():
    model = tiny("paper")
    hand_knowledge(model)
    memory = model._empty_memory(1)
    memory = model._write(memory, torch.tensor([3]))
    assert memory.values[0, 0].tolist() == pytest.approx([0.5, 0.5])       # z = σ(0) = ½ of e + r
    memory = model._write(memory, torch.tensor([3]))
    z = 1 / (1 + np.exp(-1.0))                                              # σ(⟨(.5,.5), (1,1)⟩)
    assert memory.values[0, 0].tolist() == pytest.approx([(1 - z) * 0.5 + z] * 2, abs=1e-6)  # 0.8655


def test_official_write_projects_the_entity_through_tanh():
    model = tiny("official")
    hand_knowledge(model)
    with torch.no_grad():
        model.write_projection.weight.copy_(torch.eye(2))
        model.write_projection.bias.zero_()
    memory = model._write(model._empty_memory(1), torch.tensor([0]))
    expected = 0.5 * np.array([np.tanh(1.0), 1.0])                          # ½ (tanh(e) + r)
    assert memory.values[0, 0].detach().numpy() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_gated_unroll_equals_stepwise_unroll_with_gradients(seed):
    torch.manual_seed(seed)
    B, T, M, D = 3, 7, 4, 5
    v0 = torch.randn(B, M, D, dtype=torch.float64, requires_grad=True)
    u = torch.randn(B, T, M, D, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(B, T) > 0.3
    state = MemoryState(v0, torch.ones(B, M, dtype=torch.bool))
    fused = gated_unroll(state, u, mask).values
    steps = unroll(gated_write, state, (u,), mask, return_all=True).values
    assert torch.allclose(fused, steps, atol=1e-12)
    weights = torch.randn_like(fused)
    g_fused = torch.autograd.grad((fused * weights).sum(), [v0, u])
    g_steps = torch.autograd.grad((steps * weights).sum(), [v0, u])
    for a, b in zip(g_fused, g_steps):
        assert torch.allclose(a, b, atol=1e-10)
    small = (v0[:1, :2, :3].detach().requires_grad_(), u[:1, :4, :2, :3].detach().requires_grad_())
    ones = torch.ones(1, 2, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda v, x: gated_unroll(MemoryState(v, ones), x, mask[:1, :4]).values, small)


def test_gated_unroll_shape_errors():
    state = MemoryState(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="update must be"):
        gated_unroll(state, torch.zeros(2, 5, 3, 2), torch.ones(2, 5, dtype=torch.bool))
    assert gated_unroll(state, torch.zeros(2, 0, 3, 4), torch.ones(2, 0, dtype=torch.bool)).values.shape == (2, 0, 3, 4)


# -- read oracles ------------------------------------------------------------------------------
def test_paper_read_with_gamma_zero_is_the_mean_of_the_slots():
    model = tiny("paper", gamma=0.0)
    values = torch.randn(2, 3, 2)
    m, w = model._read(torch.randn(2, 5), values)
    assert torch.allclose(w, torch.full((2, 3), 1 / 3))
    assert torch.allclose(m, values.mean(1), atol=1e-6)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_read_is_invariant_to_relation_order(variant):
    model = tiny(variant)
    h, values = torch.randn(2, 5), torch.randn(2, 3, 2)
    m, w = model._read(h, values)
    permutation = torch.tensor([2, 0, 1])
    with torch.no_grad():
        model.relation_keys.copy_(model.relation_keys[permutation])
    m2, w2 = model._read(h, values[:, permutation])
    assert torch.allclose(m, m2, atol=1e-6) and torch.allclose(w[:, permutation], w2, atol=1e-6)


def test_read_weights_match_the_formula():
    model = tiny("official")
    h = torch.randn(1, 5)
    expected = torch.softmax(torch.tanh(model.query(h)) @ model.relation_keys.T, dim=-1)   # no γ
    assert torch.allclose(model._read(h, torch.randn(1, 3, 2))[1], expected, atol=1e-6)
    paper = tiny("paper", gamma=10.0)
    expected = torch.softmax(10.0 * paper.query(h) @ paper.relation_keys.T, dim=-1)
    assert torch.allclose(paper._read(h, torch.randn(1, 3, 2))[1], expected, atol=1e-6)


# -- streaming == batch --------------------------------------------------------------------------
def histories():
    torch.manual_seed(3)
    history = torch.randint(0, 12, (4, 8))
    mask = torch.tensor([[1] * 8, [1] * 3 + [0] * 5, [1] * 6 + [0] * 2, [0] * 8]).bool()
    return torch.arange(4), history * mask, mask


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_streaming_equals_batch(variant):
    model = tiny(variant)
    model.linked[[2, 5]] = False                                            # two unlinked items
    users, history, mask = histories()
    candidates = torch.randint(0, 12, (4, 8, 3))
    prefix = model.prefix_scores(users, history, mask, candidates)
    state = model.init_state(users)
    for t in range(history.shape[1]):
        state = model.update(state, history[:, t]).where(mask[:, t], state)
        streamed = model.score_state(state, users, candidates[:, t])
        assert torch.allclose(streamed[mask[:, t]], prefix[:, t][mask[:, t]], atol=1e-5)
    batch = model.encode(users, history, mask)
    assert torch.allclose(model.score_state(state, users), model.score_state(batch, users), atol=1e-5)
    assert torch.allclose(state.values, batch.values, atol=1e-6)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_unlinked_items_and_padding_do_not_write(variant):
    model = tiny(variant)
    model.linked[7] = False
    users = torch.arange(1)
    a = model.encode(users, torch.tensor([[1, 2]]), torch.tensor([[True, True]]))
    b = model.encode(users, torch.tensor([[1, 7, 2]]), torch.tensor([[True, True, True]]))
    c = model.encode(users, torch.tensor([[1, 2, 9, 9]]), torch.tensor([[True, True, False, False]]))
    if variant == "official":
        assert torch.equal(a.values, b.values)                        # 7 left the memory as it was
    assert torch.equal(a.values, c.values) and torch.equal(a.hidden, c.hidden)
    assert torch.allclose(model.score_state(a, users), model.score_state(c, users))


def test_official_writes_before_reading_paper_reads_first():
    """After one event the official read sees that item; the paper's read sees an empty memory."""
    users, history, mask = torch.arange(1), torch.tensor([[4]]), torch.tensor([[True]])
    official = tiny("official").encode(users, history, mask)
    paper = tiny("paper").encode(users, history, mask)
    assert official.values.abs().sum() > 0
    assert paper.values.abs().sum() == 0 and paper.pending.item() == 4


# -- pretraining, freezing, checkpoints -------------------------------------------------------------
def kg_interactions():
    """Users on items 10..14 of the tiny film graph (14 is unlinked)."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 4)                                     # 4 distinct of 5 items each
    items = np.concatenate([rng.choice([10, 11, 12, 13, 14], 4, replace=False) for _ in range(20)])
    return Interactions.from_raw(users, items, timestamp=np.arange(len(users)))


@pytest.fixture(scope="module")
def transe_run(tmp_path_factory):
    from memrec.runs import train_run
    from memrec.training.config import load_config
    folder = tmp_path_factory.mktemp("transe")
    data = write_recbole(folder / "kg")
    config = load_config("transe", overrides=["train.epochs=2", "model.dim=4", "train.batch_size=4",
                                              "data.test_frac=0", "data.valid_frac=0"])
    train_run(config, data, folder / "run", echo=lambda line: None)
    return folder / "run"


def test_pretraining_loads_transe_and_bpr_vectors(transe_run, tmp_path):
    from memrec.knowledge_runs import load_transe
    split = leave_one_out(kg_interactions())
    rec = Recommender("ksr", transe=str(transe_run), kg_dim=4, dim=8, hidden=8, out_dim=4,
                      train={"epochs": 2, "pretrain_epochs": 2, "batch_size": 64, "patience": 0,
                             "n_negatives": 1})
    rec.fit(split.train, split.valid)
    model = rec.model_
    vectors = load_transe(transe_run)
    entity = vectors.graph.item_entities(split.train.items)
    linked = entity >= 0
    assert model.linked.tolist() == linked.tolist() and not linked.all()
    assert torch.equal(model.entity[torch.as_tensor(linked)], vectors.entity[entity[linked]])   # frozen
    assert model.entity[torch.as_tensor(~linked)].abs().sum() == 0
    assert model.entry_labels() == ["film.genre", "film.director"]
    assert torch.equal(model.relation_keys, vectors.relation[torch.as_tensor(vectors.item_relations.index)])
    # checkpoint round trip: the relation table is resized from the default 8 slots to 2
    rec.save(tmp_path / "ksr")
    loaded = Recommender.load(tmp_path / "ksr")
    assert loaded.model_.relation_keys.shape == (2, 4)
    assert loaded.model_.entry_labels() == ["film.genre", "film.director"]
    np.testing.assert_allclose(rec.recommend([0, 1], k=3)[1], loaded.recommend([0, 1], k=3)[1], rtol=1e-6)
    why = loaded.explain(0, rec.recommend([0], k=2)[0][0])
    assert [e.id for e in why[0]] in (["film.genre", "film.director"], ["film.director", "film.genre"])
    assert {e.kind for e in why[0]} == {"relation"}
    assert sum(e.weight for e in why[0]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("freeze", [True, False])
def test_regression_frozen_tables_keep_their_weights(freeze, monkeypatch):
    """The item table's weights after training equal those the trainer started from (after
    the BPR pretraining loaded them) when frozen, and move when not. Checking ``requires_grad``
    alone could not see a frozen table being written some other way."""
    import memrec.recommender as facade
    before = {}

    class Snapshot(facade.Trainer):
        def fit(self, model, split, **kwargs):
            before.update({k: v.clone() for k, v in model.state_dict().items()})
            return super().fit(model, split, **kwargs)

    monkeypatch.setattr(facade, "Trainer", Snapshot)
    split = leave_one_out(kg_interactions())
    rec = Recommender("ksr", dim=8, hidden=8, kg_dim=4, out_dim=4, freeze_items=freeze, kg="none",
                      train={"epochs": 2, "pretrain_epochs": 1, "batch_size": 64, "patience": 0,
                             "n_negatives": 1})
    rec.fit(split.train)
    after = rec.model_.state_dict()
    assert torch.equal(before["item_embedding.weight"], after["item_embedding.weight"]) is freeze
    assert not torch.equal(before["gru.weight_ih_l0"], after["gru.weight_ih_l0"])   # training ran
    model = build("ksr", 3, 5, {"freeze_items": freeze})
    assert all(p.requires_grad for group in model.parameter_groups(0.0) for p in group["params"])
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert ("item_embedding.weight" in names) is (not freeze)


def test_regression_ksr_with_transe_resumes_like_an_uninterrupted_run(transe_run, tmp_path):
    # a resumed model was rebuilt with trainable TransE tables, so its optimizer's parameter
    # groups no longer matched the checkpoint ("parameter group doesn't match"); KSR re-freezes
    # loaded knowledge in load_state_dict
    split = leave_one_out(kg_interactions())

    def fit(epochs, run_dir, resume=False):
        rec = Recommender("ksr", transe=str(transe_run), kg_dim=4, dim=8, hidden=8, out_dim=4,
                          train={"epochs": epochs, "pretrain_epochs": 1, "batch_size": 64,
                                 "patience": 0, "n_negatives": 1})
        return rec.fit_split(split, run_dir=run_dir, resume=resume, progress=False, echo=lambda s: None)

    straight = fit(2, tmp_path / "straight")
    fit(1, tmp_path / "resumed")
    resumed = fit(2, tmp_path / "resumed", resume=True)
    assert not resumed.model_.entity.requires_grad and not resumed.model_.relation_keys.requires_grad
    for (name, a), (_, b) in zip(straight.model_.state_dict().items(), resumed.model_.state_dict().items()):
        assert torch.equal(a, b), name


def test_transe_without_pretraining_is_a_clear_error(transe_run):
    split = leave_one_out(kg_interactions())
    rec = Recommender("ksr", transe=str(transe_run), kg_dim=4,
                      train={"epochs": 1, "pretrain_epochs": 0, "batch_size": 64})
    with pytest.raises(ConfigError, match="pretrain_epochs > 0"):
        rec.fit(split.train)


def test_mismatched_kg_dim_is_a_clear_error(transe_run):
    split = leave_one_out(kg_interactions())
    rec = Recommender("ksr", transe=str(transe_run), kg_dim=16, train={"epochs": 1, "pretrain_epochs": 1})
    with pytest.raises(ConfigError, match="kg_dim = 16 but the TransE run has 4-d"):
        rec.fit(split.train)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant must be one of official, paper"):
        KSR(2, 3, variant="recbole")


# -- end to end ---------------------------------------------------------------------------------
def test_cli_transe_then_ksr_then_explained_recommendations(tmp_path):
    data = write_recbole(tmp_path / "films")
    inter = kg_interactions()
    (data / "films.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{t}\n" for u, i, t in zip(inter.users.to_raw(inter.user), inter.items.to_raw(inter.item),
                                              inter.timestamp)))
    runner = CliRunner()
    transe = runner.invoke(main, ["train", "transe", "--data", str(data), "--out", str(tmp_path / "transe"),
                                  "--set", "train.epochs=2", "--set", "model.dim=4"])
    assert transe.exit_code == 0, transe.output
    ksr = runner.invoke(main, ["train", "ksr", "--data", str(data), "--out", str(tmp_path / "ksr"),
                               "--set", f'model.transe="{tmp_path / "transe"}"', "--set", "model.kg_dim=4",
                               "--set", "model.hidden=8", "--set", "train.epochs=2",
                               "--set", "train.pretrain_epochs=1", "--set", "train.n_negatives=1",
                               "--set", "data.n_negatives=0"])
    assert ksr.exit_code == 0, ksr.output
    plot = tmp_path / "attention.png"
    rec = runner.invoke(main, ["recommend", str(tmp_path / "ksr"), "--user", "3", "-k", "2",
                               "--explain", "--plot", str(plot)])
    assert rec.exit_code == 0, rec.output
    assert "attended: relation film." in rec.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    two = runner.invoke(main, ["recommend", str(tmp_path / "ksr"), "--user", "3", "--user", "4",
                               "--explain", "--plot", str(plot)])
    assert two.exit_code == 2 and "exactly one --user" in two.output
