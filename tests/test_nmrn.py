"""NMRN: erase/add, address, read and hinge oracles; Euclidean full ranking; the memory scopes;
micro-batch-1 stream training equals the event-by-event reference; the adversarial sampler."""

import math

import numpy as np
import pytest
import torch

from memrec.adversarial import AdversarialSampler, gumbel_noise
from memrec.data.interactions import IdMap, Interactions
from memrec.data.splits import Split
from memrec.losses import hinge
from memrec.models import build
from memrec.errors import ConfigError
from memrec.models.base import Query
from memrec.models.nmrn import NMRN
from memrec.training.config import load_config
from memrec.training.stream import StreamTask
from memrec.training.tasks import make_task
from memrec.training.trainer import Trainer

T = torch.tensor


def stream_data(n_users=5, n_items=12, n=40, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n).astype(np.int32)
    items = rng.integers(0, n_items, n).astype(np.int32)
    return Interactions(users, items, IdMap.range(n_users), IdMap.range(n_items),
                        timestamp=np.arange(n, dtype=np.float64))


def fixed_model(**params) -> NMRN:
    torch.manual_seed(0)
    return NMRN(5, 12, dim=4, slots=3, **params)


# -- oracles ---------------------------------------------------------------------------------------
def test_erase_one_with_full_weight_zeroes_the_slot_before_the_add():
    m = NMRN(1, 2, dim=2, slots=1)             # one slot: the address is 1 whatever the user
    with torch.no_grad():
        m.erase.weight.zero_(); m.erase.bias.fill_(100.0)          # e = σ(100) = 1
        m.add.weight.zero_(); m.add.bias.copy_(T([0.5, -0.25]))    # a = tanh(b)
        m.memory.fill_(5.0)
    m.observe(T([0]), T([1]))
    torch.testing.assert_close(m.memory[0, 0], torch.tanh(T([0.5, -0.25])))
    # half erase (e = σ(0) = 0.5): m ← m ⊙ (1 − 0.5) + a
    with torch.no_grad():
        m.erase.bias.zero_()
    before = m.memory[0, 0].clone()
    m.observe(T([0]), T([0]))
    torch.testing.assert_close(m.memory[0, 0], before * 0.5 + torch.tanh(T([0.5, -0.25])))


def test_address_is_a_softmax_of_negative_euclidean_distance():
    m = NMRN(2, 3, dim=2, slots=2)
    with torch.no_grad():
        m.user_embedding.weight.copy_(T([[0.0, 0.0], [3.0, 4.0]]))
        m.keys.copy_(T([[1.0, 0.0], [0.0, 2.0]]))                   # distances from user 0: 1, 2
    w = m.address(T([0, 1]))
    torch.testing.assert_close(w[0], torch.softmax(T([-1.0, -2.0]), 0))
    # user 1 = (3, 4): ‖(2, 4)‖ = √20, ‖(3, 2)‖ = √13
    torch.testing.assert_close(w[1], torch.softmax(T([-math.sqrt(20), -math.sqrt(13)]), 0))
    torch.testing.assert_close(w.sum(1), torch.ones(2))


def test_explain_names_the_slots_the_user_addresses():
    m = NMRN(2, 3, dim=2, slots=2)
    with torch.no_grad():
        m.user_embedding.weight.copy_(T([[0.0, 0.0], [3.0, 4.0]]))
        m.keys.copy_(T([[1.0, 0.0], [0.0, 2.0]]))                   # user 0 is nearer slot 0
    from memrec.models.base import Query
    explained = m.explain(Query.for_users([0]), torch.tensor([0, 2]))
    p = torch.softmax(T([-1.0, -2.0]), 0)
    for entries in explained:
        assert [(e.kind, e.id) for e in entries] == [("slot", 0), ("slot", 1)]
        assert [e.weight for e in entries] == pytest.approx(p.tolist())


def test_equal_keys_address_uniformly_whatever_the_user():
    m = fixed_model()
    with torch.no_grad():
        m.keys.copy_(T([1.0, -2.0, 0.5, 3.0]).expand(3, 4))
    torch.testing.assert_close(m.address(torch.arange(5)), torch.full((5, 3), 1 / 3))


def test_hinge_oracle_and_no_gradient_beyond_the_margin():
    # d⁺ = 1, d⁻ = 3, margin 3: max(0, 3 + 1 − 3) = 1 (scores are −d)
    assert float(hinge(T([-1.0]), T([[-3.0]]), margin=3.0)) == pytest.approx(1.0)
    pos, neg = T([-1.0], requires_grad=True), T([[-5.0]], requires_grad=True)   # d⁻ ≥ d⁺ + 3
    loss = hinge(pos, neg, margin=3.0)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(pos.grad) == 0.0 and float(neg.grad) == 0.0


def test_read_merge_and_euclidean_score_by_hand():
    m = NMRN(1, 2, dim=2, slots=2, merge="sum")
    with torch.no_grad():
        m.user_embedding.weight.copy_(T([[0.0, 0.0]]))
        m.keys.copy_(T([[1.0, 0.0], [0.0, 2.0]]))
        m.memory[0] = T([[1.0, 0.0], [0.0, 1.0]])
        m.item_embedding.weight.copy_(T([[1.0, 1.0], [0.0, 0.0]]))
    w = torch.softmax(T([-1.0, -2.0]), 0)
    s = w[0] * T([1.0, 0.0]) + w[1] * T([0.0, 1.0])                 # u = 0, so s = read
    expected = -T([((s - T([1.0, 1.0])) ** 2).sum(), (s ** 2).sum()])
    torch.testing.assert_close(m.score_all(Query.for_users([0]))[0], expected)


@pytest.mark.parametrize("scope", ["per_user", "global"])
def test_full_ranking_matmul_equals_direct_distances(scope):
    m = fixed_model(scope=scope)
    m.observe(*map(torch.as_tensor, (np.array([0, 1, 0, 3]), np.array([2, 5, 7, 1]))))
    users = torch.arange(5)
    s = m.user_vectors(users, m.memory[m.rows(users)])
    direct = -torch.cdist(s, m.item_embedding.weight).pow(2)
    with torch.no_grad():
        torch.testing.assert_close(m.score_all(Query.for_users(users)), direct, atol=1e-5, rtol=1e-5)
        items = torch.randint(0, 12, (5, 4))
        torch.testing.assert_close(m.score_items(Query.for_users(users), items), direct.gather(1, items),
                                   atol=1e-5, rtol=1e-5)


# -- memory scopes and writes ----------------------------------------------------------------------
def test_per_user_memory_is_written_only_by_the_users_own_events_global_by_all():
    for scope, changes_others in (("per_user", False), ("global", True)):
        m = fixed_model(scope=scope)
        before = m.score_all(Query.for_users([1])).detach()
        m.observe(T([0]), T([3]))
        after = m.score_all(Query.for_users([1])).detach()
        assert (not torch.equal(before, after)) == changes_others, scope


@pytest.mark.parametrize("scope", ["per_user", "global"])
def test_one_batched_observe_equals_writing_event_by_event(scope):
    data = stream_data()
    users, items = torch.as_tensor(data.user, dtype=torch.long), torch.as_tensor(data.item, dtype=torch.long)
    a, b = fixed_model(scope=scope), fixed_model(scope=scope)
    a.observe(users, items)
    for u, i in zip(users, items):
        b.observe(u[None], i[None])
    torch.testing.assert_close(a.memory, b.memory)


def test_a_micro_batch_reads_the_memory_as_it_stood_before_it():
    m = fixed_model()
    users, items = T([2, 2, 4]), T([1, 6, 3])
    candidates = torch.stack([items, T([0, 0, 0])], 1)
    expected = m.score_items(Query.for_users(users), candidates).detach()      # before any write
    scores = m.stream_step(users, items, candidates)
    torch.testing.assert_close(scores.detach(), expected)
    reference = fixed_model()
    reference.observe(users, items)
    torch.testing.assert_close(m.memory, reference.memory)


def test_the_next_micro_batch_back_propagates_into_the_previous_write():
    m = fixed_model()
    m.stream_step(T([1]), T([4]), T([[4, 0]]))       # the first write adds to a zero memory...
    m.stream_step(T([1]), T([7]), T([[7, 0]]))       # ...so only a second one has something to erase
    m.zero_grad()
    scores = m.stream_step(T([1]), T([5]), T([[5, 0]]))
    hinge(scores[:, 0], scores[:, 1:], margin=10.0).backward()
    assert m.erase.weight.grad.abs().sum() > 0 and m.add.weight.grad.abs().sum() > 0


# -- micro-batch 1 == exact event by event ---------------------------------------------------------
def _trained(mode: str, sampler: str, scope: str):
    data = stream_data(n=30)
    cfg = load_config("nmrn", overrides=[f'train.stream_mode="{mode}"', f'train.sampler="{sampler}"',
                                         "train.batch_size=1", "train.epochs=2", "train.gan_pool=5",
                                         "train.gan_pretrain_epochs=1", "train.gan_warmup_epochs=1",
                                         "train.n_negatives=2", "model.dim=4", "model.slots=3",
                                         f'model.scope="{scope}"']).train
    torch.manual_seed(0)
    model = NMRN(5, 12, dim=4, slots=3, scope=scope)
    split = Split(kind="stream", train=data, test=data.take(np.arange(0)))
    Trainer(cfg, echo=lambda line: None).fit(model, split)
    return model


@pytest.mark.parametrize("sampler,scope", [("uniform", "per_user"), ("uniform", "global"),
                                           ("adversarial", "per_user")])
def test_micro_batch_of_one_equals_the_exact_event_by_event_mode(sampler, scope):
    fast, exact = _trained("micro_batch", sampler, scope), _trained("exact", sampler, scope)
    for (name, a), (_, b) in zip(fast.state_dict().items(), exact.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert fast.memory.abs().sum() > 0


# -- training end to end and bad input -------------------------------------------------------------
def test_stream_training_lowers_the_hinge_loss():
    data = stream_data(n_users=8, n_items=40, n=200, seed=1)
    cfg = load_config("nmrn", overrides=["train.batch_size=16", "train.epochs=8", "train.lr=0.01",
                                         'train.sampler="uniform"']).train
    torch.manual_seed(0)
    model = NMRN(8, 40, dim=8, slots=4)
    result = Trainer(cfg, echo=lambda line: None).fit(
        model, Split(kind="stream", train=data, test=data.take(np.arange(0))))
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_adversarial_sampler_is_only_for_stream_models():
    data = stream_data()
    cfg = load_config("bprmf", overrides=['train.sampler="adversarial"'])
    model = build("bprmf", 5, 12, cfg.model_params)
    with pytest.raises(ConfigError, match="stream model"):
        make_task(model, data, cfg.train)


def test_bad_nmrn_options_are_clear_errors():
    with pytest.raises(ValueError, match="scope"):
        NMRN(2, 2, scope="team")
    with pytest.raises(ValueError, match="merge"):
        NMRN(2, 2, merge="concat")
    with pytest.raises(ConfigError, match="pairwise"):
        StreamTask(stream_data(), load_config("nmrn", overrides=['train.loss="softmax"']).train)


# -- the generator -----------------------------------------------------------------------------------
def test_gumbel_max_samples_the_generators_softmax():
    g = AdversarialSampler(1, 3, dim=2, seed=0)
    with torch.no_grad():
        g.net.user_embedding.weight.zero_()
        g.net.item_bias.weight.copy_(T([[0.0], [math.log(3.0)], [-30.0]]))   # p ∝ 1 : 3 : ~0
    pool = T([[0, 1, 2]])
    noise = gumbel_noise((1, 20000, 3), torch.Generator().manual_seed(0))
    items, _ = g.choose(T([0]), pool, noise)
    share = (items == 1).float().mean()
    assert abs(float(share) - 0.75) < 0.02 and not (items == 2).any()


def test_reinforce_raises_the_probability_of_rewarded_negatives():
    g = AdversarialSampler(1, 4, dim=2, lr=0.05, seed=0)
    users, pool = T([0, 0]), T([[0, 1, 2, 3], [0, 1, 2, 3]])
    picked, reward = T([[1], [2]]), T([[1.0], [0.0]])                 # item 1 was hard, item 2 easy
    p_before = torch.softmax(g.logits(T([0]), pool[:1]), -1).detach()
    for _ in range(20):
        g.reinforce(users, pool, picked, reward)
    p_after = torch.softmax(g.logits(T([0]), pool[:1]), -1).detach()
    assert p_after[0, 1] > p_before[0, 1] and p_after[0, 2] < p_before[0, 2]


def test_the_scan_and_the_row_by_row_write_paths_agree(monkeypatch):
    data = stream_data(n=60, seed=4)
    users, items = torch.as_tensor(data.user, dtype=torch.long), torch.as_tensor(data.item, dtype=torch.long)
    scanned = fixed_model()
    scanned.observe(users, items)
    monkeypatch.setattr(NMRN, "SCAN_BUDGET", 0)                      # always erase_add_final
    looped = fixed_model()
    looped.observe(users, items)
    torch.testing.assert_close(scanned.memory, looped.memory)
