"""Knowledge graphs and TransE: the KnowledgeGraph type on tiny hand-made files (both layouts),
the KSR relation restriction, TransE's energy and corruption, filtered link prediction against a
brute-force oracle, the exact random-ranker expectation, learning on a planted graph, TransE as a
registered model trained by the shared trainer (the former loop's numerics, the validator hook),
the run folder with its exports, resume, and the CLI."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.interactions import IdMap
from memrec.errors import CheckpointError, ConfigError, DataError
from memrec.data.knowledge import KnowledgeGraph, split_triples
from memrec.knowledge_runs import (KnownTriples, LinkPredictionValidator, link_prediction, load_transe,
                                   random_ranker)
from memrec.models import REGISTRY, KnowledgeGraphEmbedding, build, build_graph_model, effective_params
from memrec.models.transe import TransE
from memrec.runs import train_run
from memrec.training.config import load_config
from memrec.training.trainer import Trainer
from memrec.training.triples import TripleTask, corrupt

from .conftest import shared_path

# A film graph: films f1..f4 (items 10..13; item 14 is unlinked), genres, a director, and the
# inverse genre relation (genre → film) that KSR must not use.
KG_ROWS = [("f1", "film.genre", "drama"), ("f2", "film.genre", "drama"), ("f3", "film.genre", "comedy"),
           ("f4", "film.genre", "comedy"), ("f1", "film.director", "d1"), ("f2", "film.director", "d1"),
           ("drama", "genre.films", "f1"), ("drama", "genre.films", "f2"), ("comedy", "genre.films", "f3"),
           ("f1", "film.genre", "drama")]                                   # a duplicate triple
LINK_ROWS = [(10, "f1"), (11, "f2"), (12, "f3"), (13, "f4"), (13, "f1"), (15, "nowhere")]


def write_recbole(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "films.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n"
                                     + "".join(f"{h}\t{r}\t{t}\n" for h, r, t in KG_ROWS))
    (folder / "films.link").write_text("item_id:token\tentity_id:token\n"
                                       + "".join(f"{i}\t{e}\n" for i, e in LINK_ROWS))
    return folder


def write_kgcn(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kg.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in KG_ROWS))
    (folder / "item_index2entity_id.txt").write_text("".join(f"{i}\t{e}\n" for i, e in LINK_ROWS))
    return folder


@pytest.mark.parametrize("writer", [write_recbole, write_kgcn], ids=["recbole", "kgcn"])
def test_knowledge_graph_from_both_layouts(writer, tmp_path):
    graph = KnowledgeGraph.load(writer(tmp_path / "kg"))
    assert (graph.n_entities, graph.n_relations, len(graph)) == (7, 3, 9)   # duplicate dropped
    h, r, t = graph.triples[0]
    assert (graph.entities.raw[h], graph.relations.raw[r], graph.entities.raw[t]) == ("f1", "film.genre", "drama")
    assert graph.dropped_links == {"duplicate item": 1, "entity not in graph": 1}
    items = IdMap(np.array([14, 12, 10, 13, 15], dtype=np.int64))
    linked = graph.item_entities(items)
    assert linked.tolist()[0] == -1 and linked.tolist()[4] == -1           # unlinked; link to a missing entity
    assert graph.entities.raw[linked[1:4]].tolist() == ["f3", "f1", "f4"]  # 13 keeps its first link
    # string item ids in the dataset against integer ids in the link file
    assert graph.item_entities(IdMap(np.array(["12", "99"]))).tolist() == [linked[1], -1]


def test_item_relations_keep_item_to_attribute_relations_only(tmp_path):
    graph = KnowledgeGraph.load(write_recbole(tmp_path / "kg"))
    # genre.films (genre → film) is read as genre.films⁻¹, but its pairs are film.genre's: the same
    # fact stored backwards adds no slot; film.director touches 2 of 4 linked items
    assert graph.item_relations().names(graph.relations) == ["film.genre", "film.director"]
    assert graph.item_relations(min_item_share=0.75).names(graph.relations) == ["film.genre"]
    assert "genre.films⁻¹" not in graph.item_relations(min_head_share=0.0).names(graph.relations)


def test_knowledge_graph_errors(tmp_path):
    import pandas as pd
    with pytest.raises(DataError, match="no triples"):
        KnowledgeGraph.from_frames(pd.DataFrame(columns=["head", "relation", "tail"]))
    graph = KnowledgeGraph.from_frames(pd.DataFrame(KG_ROWS, columns=["head", "relation", "tail"]))
    assert graph.item_entities(IdMap.range(3)).tolist() == [-1, -1, -1]
    assert len(graph.item_relations()) == 0
    with pytest.raises(DataError, match="no item is linked to one of its entities"):
        graph.require_item_relations()


def test_ml100k_freebase_graph_relations():
    graph = KnowledgeGraph.load(shared_path("ml-100k", "recbole"))
    kept = set(graph.item_relations().names(graph.relations))
    assert "film.film.genre" in kept and "film.film.directed_by" in kept
    assert not any(r.startswith("film.film_genre") or r == "film.director.film" for r in kept)


# -- TransE ------------------------------------------------------------------------------------
def hand_model(norm):
    model = TransE(3, 1, dim=2, norm=norm)
    with torch.no_grad():
        model.entity.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, -1.0]]))
        model.relation.weight.copy_(torch.tensor([[1.0, 0.0]]))
    return model


@pytest.mark.parametrize("norm, second", [(1, 3.0), (2, math.sqrt(5))])
def test_transe_distance_hand_case(norm, second):
    model = hand_model(norm)
    # e_0 + r − e_1 = (0, −1): 1 in both norms; e_1 + r − e_2 = (−1, 2): L1 3, L2 √5
    d = model.distance(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert d.tolist() == pytest.approx([1.0, second])


@pytest.mark.parametrize("norm", [1, 2])
def test_all_entity_distances_equal_pointwise_ones(norm):
    torch.manual_seed(0)
    model = TransE(7, 3, dim=5, norm=norm)
    h, r, t = torch.tensor([0, 4]), torch.tensor([2, 1]), torch.tensor([6, 3])
    every = torch.arange(7)
    tails = model.tail_distances(h, r)
    heads = model.head_distances(r, t)
    for b in range(2):
        assert torch.allclose(tails[b], model.distance(h[b].expand(7), r[b].expand(7), every), atol=1e-5)
        assert torch.allclose(heads[b], model.distance(every, r[b].expand(7), t[b].expand(7)), atol=1e-5)


def test_normalisation_and_initialisation():
    model = TransE(50, 4, dim=8)
    assert torch.allclose(model.relation.weight.norm(dim=1), torch.ones(4))
    bound = 6 / math.sqrt(8)
    assert model.entity.weight.abs().max() <= bound
    model.normalize_entities_()
    assert torch.allclose(model.entity.weight.norm(dim=1), torch.ones(50), atol=1e-6)


def test_corruption_replaces_exactly_head_or_tail():
    triples = torch.tensor([[0, 1, 2], [3, 0, 4]]).repeat(500, 1)
    out = corrupt(triples, 1000, 3, torch.Generator().manual_seed(0))
    assert out.shape == (1000, 3, 3)
    same = out == triples[:, None, :]
    assert same[..., 1].all()                                               # relation kept
    assert (same[..., 0] | same[..., 2]).all()                              # at most one side changed
    head_share = (~same[..., 0]).float().mean().item()
    assert 0.45 < head_share < 0.55 and (~same[..., 2]).float().mean().item() > 0.45


def random_graph(seed=0, n_entities=30, n_relations=3, n_triples=120):
    rng = np.random.default_rng(seed)
    triples = np.stack([rng.integers(0, n_entities, n_triples), rng.integers(0, n_relations, n_triples),
                        rng.integers(0, n_entities, n_triples)], axis=1)
    return np.unique(triples, axis=0)


def brute_force_ranks(model, test, all_triples):
    """Filtered ranks by a Python loop over entities: the oracle of the vectorised version."""
    true = {tuple(x) for x in all_triples.tolist()}
    ranks = {"tail": [], "head": []}
    for h, r, t in test.tolist():
        with torch.no_grad():
            d_true = model.distance(*map(torch.tensor, (h, r, t))).item()
            better_t = better_h = 0
            for e in range(model.n_entities):
                if (h, r, e) not in true and model.distance(*map(torch.tensor, (h, r, e))).item() < d_true:
                    better_t += 1
                if (e, r, t) not in true and model.distance(*map(torch.tensor, (e, r, t))).item() < d_true:
                    better_h += 1
        ranks["tail"].append(better_t + 1)
        ranks["head"].append(better_h + 1)
    return ranks


def test_filtered_link_prediction_matches_brute_force():
    triples = random_graph()
    torch.manual_seed(1)
    model = TransE(30, 3, dim=4, norm=1)
    test = triples[::7]
    known = KnownTriples(triples, 30, 3)
    metrics = link_prediction(model, test, known, batch_size=5)
    ranks = brute_force_ranks(model, test, triples)
    both = np.array(ranks["tail"] + ranks["head"], dtype=float)
    assert metrics["MR"] == pytest.approx(both.mean())
    assert metrics["MRR"] == pytest.approx((1 / both).mean())
    assert metrics["Hits@3"] == pytest.approx((both <= 3).mean())
    assert metrics["tail MRR"] == pytest.approx((1 / np.array(ranks["tail"])).mean())


def test_random_ranker_expectation_is_exact():
    triples = random_graph(n_entities=25)
    known = KnownTriples(triples, 25, 3)
    test = triples[:20]
    expected = random_ranker(test, known, 25)
    truth = {tuple(x) for x in triples.tolist()}
    n = []
    for h, r, t in test.tolist():                                           # candidates left after filtering
        n.append(25 - sum((h, r, e) in truth for e in range(25)) + 1)
        n.append(25 - sum((e, r, t) in truth for e in range(25)) + 1)
    n = np.array(n)
    assert expected["MRR"] == pytest.approx(np.mean([sum(1 / k for k in range(1, c + 1)) / c for c in n]), rel=1e-6)
    assert expected["Hits@10"] == pytest.approx(np.mean(np.minimum(10, n) / n))
    assert expected["MR"] == pytest.approx(np.mean((n + 1) / 2))


def planted_graph():
    """Films 0..99 with a director (entities 100..109, relation 0) and a genre (110..114,
    relation 1) that the director determines: a held-out genre follows from the director."""
    films = np.arange(100)
    director = 100 + films % 10
    genre = 110 + (director - 100) % 5
    return np.concatenate([np.stack([films, np.zeros(100, int), director], 1),
                           np.stack([films, np.ones(100, int), genre], 1)]).astype(np.int64)


def transe_train_config(**overrides):
    """TransE's registered training defaults with ``overrides`` (TrainConfig keys)."""
    return load_config("transe", overrides=[f"train.{k}={v}" for k, v in overrides.items()]).train


def test_transe_learns_a_planted_graph_far_above_random():
    triples = planted_graph()
    train, valid, test = split_triples(triples, 115, 2, test_frac=0.1, valid_frac=0.0, seed=0)
    known = KnownTriples(triples, 115, 2)
    torch.manual_seed(0)
    model = TransE(115, 2, dim=16, norm=1)
    cfg = transe_train_config(epochs=60, batch_size=32, lr=0.01, margin=1.0, patience=0)
    Trainer(cfg, progress=False, echo=lambda line: None).fit(model, task=TripleTask(train, 115, cfg))
    model.constrain_()
    ours = link_prediction(model, test, known)
    chance = random_ranker(test, known, 115)
    assert ours["tail Hits@10"] > 0.9                                       # 5 genres / 10 directors
    assert ours["Hits@10"] > 5 * chance["Hits@10"] and ours["MRR"] > 5 * chance["MRR"]


def test_split_triples_keeps_held_out_entities_covered():
    triples = random_graph(n_entities=80, n_triples=100)
    train, valid, test = split_triples(triples, 80, 3, test_frac=0.3, valid_frac=0.2, seed=0)
    assert len(train) + len(valid) + len(test) == len(triples)
    covered = set(train[:, 0]) | set(train[:, 2])
    for part in (valid, test):
        assert set(part[:, 0]) <= covered and set(part[:, 2]) <= covered


# -- TransE in the shared training stack -----------------------------------------------------------
def test_transe_is_a_registered_knowledge_graph_model():
    spec = REGISTRY["transe"]
    assert issubclass(spec.cls, KnowledgeGraphEmbedding) and spec.data == "knowledge_graph"
    assert spec.sizes == ("n_entities", "n_relations")
    assert not any(issubclass(s.cls, KnowledgeGraphEmbedding) for n, s in REGISTRY.items() if n != "transe")
    model = build_graph_model("transe", 7, 3, {"dim": 4, "norm": 2})
    assert (model.n_entities, model.n_relations, model.entity.embedding_dim) == (7, 3, 4)
    # each builder refuses the other kind: TransE must not embed users as entities
    with pytest.raises(ConfigError, match="knowledge graph"):
        build("transe", 5, 9)
    with pytest.raises(ConfigError, match="interactions"):
        build_graph_model("bprmf", 5, 9)
    with pytest.raises(ConfigError, match="norm must be 1 or 2"):
        build_graph_model("transe", 7, 3, {"norm": 3})
    with pytest.raises(ConfigError, match="dim must be positive"):
        build_graph_model("transe", 7, 3, {"dim": 0})


def former_transe_loop(model, train, *, epochs, batch_size, n_negatives, margin, lr, seed):
    """The standalone TransE trainer this library had before TransE joined the shared trainer
    (Adam, renormalise, corrupt, hinge on −d, step), kept as the oracle of its numerics."""
    from memrec.losses import hinge
    from memrec.training.trainer import deterministic_algorithms
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
    generator = torch.Generator().manual_seed(seed)
    train = torch.as_tensor(train)
    with deterministic_algorithms(True):
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=generator)
            for start in range(0, len(train), batch_size):
                batch = train[order[start:start + batch_size]]
                model.normalize_entities_()
                negatives = corrupt(batch, model.n_entities, n_negatives, generator)
                positive = model.distance(batch[:, 0], batch[:, 1], batch[:, 2])
                negative = model.distance(negatives[..., 0], negatives[..., 1], negatives[..., 2])
                loss = hinge(-positive, -negative, margin=margin)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


def test_shared_trainer_keeps_the_former_transe_numerics():
    triples = random_graph(n_entities=40, n_triples=300)
    settings = dict(epochs=3, batch_size=16, n_negatives=2, margin=0.5, lr=0.01, seed=4)
    torch.manual_seed(0)
    expected = TransE(40, 3, dim=8)
    former_transe_loop(expected, triples, **settings)
    torch.manual_seed(0)
    model = TransE(40, 3, dim=8)
    cfg = transe_train_config(patience=0, **settings)
    result = Trainer(cfg, progress=False, echo=lambda line: None).fit(model, task=TripleTask(triples, 40, cfg))
    assert torch.equal(model.entity.weight, expected.entity.weight)
    assert torch.equal(model.relation.weight, expected.relation.weight)
    assert [r["epoch"] for r in result.history] == [1, 2, 3] and result.best_epoch == 3   # no validator


def test_triple_batches_cover_every_triple_once_per_epoch():
    triples = random_graph(n_triples=50)
    task = TripleTask(triples, 30, transe_train_config(batch_size=7, n_negatives=3))
    batches = list(task.batches(torch.Generator().manual_seed(0)))
    seen = torch.cat([b.triples for b in batches])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, triples.tolist()))
    assert [b.size for b in batches] == [7] * 7 + [len(triples) - 49]
    assert batches[0].negatives.shape == (7, 3, 3)
    assert torch.equal(batches[0].negatives[..., 1], batches[0].triples[:, None, 1].expand(7, 3))


def test_triple_task_refuses_settings_it_would_ignore():
    triples = random_graph()
    with pytest.raises(ConfigError, match="margin ranking loss"):
        TripleTask(triples, 30, transe_train_config(loss="bpr"))
    with pytest.raises(ConfigError, match="uniform"):
        TripleTask(triples, 30, transe_train_config(sampler="popularity"))
    with pytest.raises(ConfigError, match="margin must be >= 0"):
        TripleTask(triples, 30, transe_train_config(margin=-1))


def test_trainer_stops_on_the_given_validator_and_restores_its_best_epoch():
    class Scripted:
        """Reports a scripted MRR per validation and remembers the weights it saw."""
        protocols = ("link",)

        def __init__(self):
            self.mrr, self.seen = [0.1, 0.5, 0.3, 0.2, 0.9], []

        def evaluate(self, model):
            self.seen.append(model.entity.weight.detach().clone())
            return {"link": {"MRR": self.mrr[len(self.seen) - 1]}}

    triples = random_graph()
    torch.manual_seed(0)
    model = TransE(30, 3, dim=4)
    cfg = transe_train_config(epochs=5, eval_every=1, patience=2, batch_size=16)
    validator = Scripted()
    result = Trainer(cfg, progress=False, echo=lambda line: None).fit(
        model, task=TripleTask(triples, 30, cfg), validator=validator)
    assert result.stopped_early and result.best_epoch == 2 and len(result.history) == 4
    assert [r["valid"]["link"]["MRR"] for r in result.history] == [0.1, 0.5, 0.3, 0.2]
    assert torch.equal(model.entity.weight, validator.seen[1])


def test_link_prediction_validator_scores_a_constrained_copy():
    triples = random_graph()
    known = KnownTriples(triples, 30, 3)
    torch.manual_seed(0)
    model = TransE(30, 3, dim=4)
    before = model.entity.weight.detach().clone()
    assert not torch.allclose(before.norm(dim=1), torch.ones(30))
    metrics = LinkPredictionValidator(triples[:20], known, batch_size=8).evaluate(model)
    assert torch.equal(model.entity.weight, before)                         # the trained weights untouched
    model.normalize_entities_()
    assert metrics == {"link": link_prediction(model, triples[:20], known, 8)}


# -- run folders -------------------------------------------------------------------------------
FAST = ["train.epochs=4", "train.eval_every=2", "train.batch_size=4", "model.dim=8",
        "data.test_frac=0.2", "data.valid_frac=0.1"]


def fast_config(*extra):
    return load_config("transe", overrides=FAST + list(extra))


def quiet(line):
    pass


def test_transe_run_saves_results_and_exports(tmp_path):
    data = write_recbole(tmp_path / "kg")
    results = train_run(fast_config(), data, tmp_path / "run", echo=quiet)
    assert results["test"]["n_triples"] + results["valid"]["n_triples"] > 0
    assert results["item_relations"] == ["film.genre", "film.director"]
    assert results["params"] == {"dim": 8}
    export = tmp_path / "run" / "export"
    ent = (export / "films.ent_feature").read_text().splitlines()
    assert ent[0] == "ent_id:token\tent_vec:float_seq" and len(ent) == 1 + 7
    entity_id, vector = ent[1].split("\t")
    assert len(vector.split(" ")) == 8
    assert (export / "films.rel_feature").read_text().splitlines()[0] == "rel_id:token\trel_vec:float_seq"
    assert len((export / "r_matrix.txt").read_text().splitlines()) == 2
    assert len((export / "item_entities.txt").read_text().splitlines()) == 4   # linked items only
    loaded = load_transe(tmp_path / "run")
    row = loaded.graph.entities.to_index([entity_id])[0]
    np.testing.assert_allclose(loaded.entity[row].numpy(), np.array(vector.split(" "), float), rtol=1e-4, atol=1e-6)
    assert torch.allclose(loaded.entity.norm(dim=1), torch.ones(7))         # saved as every batch began
    assert loaded.graph.item_entities(IdMap(np.array([11, 14]))).tolist()[1] == -1
    assert json.loads((tmp_path / "run" / "results.json").read_text())["graph"]["triples"] == 9
    # the shared trainer's files, and the shared checkpoint format
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4] and "MRR" in log[1]["valid"]["link"]
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert (meta["model"], meta["n_entities"], meta["n_relations"]) == ("transe", 7, 3) and "versions" in meta
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["config"]["model"]
    assert recorded == {"name": "transe", **effective_params("transe", {"dim": 8})} and recorded["dim"] == 8


def test_transe_resume_equals_uninterrupted(tmp_path):
    data = write_recbole(tmp_path / "kg")
    train_run(fast_config(), data, tmp_path / "full", echo=quiet)

    def interrupt(line):
        if line.startswith("epoch 2/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_run(fast_config(), data, tmp_path / "cut", echo=interrupt)
    train_run(fast_config(), data, tmp_path / "cut", resume=True, echo=quiet)
    a, b = load_transe(tmp_path / "full"), load_transe(tmp_path / "cut")
    assert torch.equal(a.entity, b.entity) and torch.equal(a.relation, b.relation)


def test_two_epochs_then_resume_to_three_equals_three_straight(tmp_path):
    data = write_recbole(tmp_path / "kg")
    straight = train_run(fast_config("train.epochs=3", "train.eval_every=1"), data, tmp_path / "a", echo=quiet)
    train_run(fast_config("train.epochs=2", "train.eval_every=1"), data, tmp_path / "b", echo=quiet)
    first = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    lines = []
    resumed = train_run(fast_config("train.epochs=3", "train.eval_every=1"), data, tmp_path / "b",
                        resume=True, echo=lines.append)
    a, b = load_transe(tmp_path / "a"), load_transe(tmp_path / "b")
    assert torch.equal(a.entity, b.entity) and torch.equal(a.relation, b.relation)
    assert resumed["best_epoch"] == straight["best_epoch"] and resumed["test"] == straight["test"]
    # it continued (epochs 1–2 are the first run's records, timings included) rather than retrained
    assert "resuming after epoch 2" in lines and sum(line.startswith("epoch ") for line in lines) == 1
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert log[:2] == first and [json.loads(line)["epoch"] for line in log] == [1, 2, 3]


def test_transe_folders_of_the_former_trainer_still_load(tmp_path):
    """KSR reads TransE runs made before TransE joined the shared trainer: model.json without
    ``versions``, model.pt = {"state": ...}."""
    from memrec.fileio import atomic_torch_save
    torch.manual_seed(0)
    model = TransE(7, 3, dim=4)
    folder = tmp_path / "old"
    atomic_torch_save({"state": model.state_dict()}, folder / "model.pt")
    (folder / "model.json").write_text(json.dumps({"format_version": 1, "model": "transe", "n_entities": 7,
                                                   "n_relations": 3, "params": {"dim": 4, "norm": 1}}))
    graph = KnowledgeGraph.load(write_recbole(tmp_path / "kg"))
    # the former graph.json: slot indices only (every slot then was item → attribute)
    (folder / "graph.json").write_text(json.dumps({
        "entities": graph.entities.to_json(), "relations": graph.relations.to_json(),
        "link_items": graph.link_items.tolist(), "link_entities": graph.link_entities.tolist(),
        "item_relations": [0, 1]}))
    loaded = load_transe(folder)
    assert torch.equal(loaded.entity, model.entity.weight) and loaded.item_relations.index.tolist() == [0, 1]
    assert loaded.item_relations.inverse.tolist() == [False, False]
    assert torch.equal(loaded.slot_keys(), model.relation.weight[:2])
    (folder / "model.json").write_text(json.dumps({"format_version": 1, "model": "bprmf"}))
    with pytest.raises(CheckpointError, match="not a TransE run"):
        load_transe(folder)


def test_transe_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key train.lrr"):
        load_config("transe", overrides=["train.lrr=1"])
    with pytest.raises(ConfigError, match="has no parameter 'hidden'"):
        load_config("transe", overrides=["model.hidden=3"])
    with pytest.raises(ConfigError, match="config says 'bprmf'"):
        load_config("transe", overrides=["model.name=bprmf"])
    defaults = load_config("transe")
    assert (defaults.train.loss, defaults.train.valid_metric, defaults.train.eval_every) == ("hinge", "MRR", 10)
    assert (defaults.data.test_frac, defaults.data.valid_frac) == (0.05, 0.05)
    data = write_recbole(tmp_path / "kg")
    for bad, fragment in (("data.split=loo", "data.split do not apply"),
                          ("train.refit=true", "train.refit do not apply"),
                          ("model.norm=3", "norm must be 1 or 2"),
                          ("data.valid_frac=0.99", "sum below 1")):
        with pytest.raises(ConfigError, match=fragment):
            train_run(fast_config(bad), data, tmp_path / "run", echo=quiet)
        assert not (tmp_path / "run").exists()                              # refused before writing


@pytest.mark.parametrize("name", ["transe_ml-100k", "transe_lastfm-kg"])
def test_shipped_transe_configs_load(name):
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml"
    config = load_config(path=path)
    assert config.model == "transe" and config.model_params["dim"] == 64 and config.train.epochs > 0
    assert (config.train.lr, config.train.patience, config.data.test_frac) == (0.005, 3, 0.05)


def test_cli_train_transe_and_errors(tmp_path):
    data = write_kgcn(tmp_path / "kg")
    args = ["train", "transe", "--data", str(data), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args + sum((["--set", s] for s in FAST), []))
    assert result.exit_code == 0, result.output
    assert "Hits@10" in result.output and (tmp_path / "run" / "export" / "kg.ent_feature").is_file()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = CliRunner().invoke(main, ["train", "transe", "--data", str(data), "--out", str(tmp_path / "x"),
                                    "--set", "model.norm=5"])
    assert bad.exit_code == 2 and "norm must be 1 or 2" in bad.output
    split = CliRunner().invoke(main, ["train", "transe", "--data", str(data), "--out", str(tmp_path / "y"),
                                      "--split", "loo"])
    assert split.exit_code == 2 and "do not apply to transe" in split.output
    # a TransE run recommends nothing: a one-line error, not a traceback
    evaluate = CliRunner().invoke(main, ["evaluate", str(tmp_path / "run")])
    assert evaluate.exit_code == 2 and "embeds a knowledge graph" in evaluate.output
    assert "transe" in CliRunner().invoke(main, ["models"]).output.split()


def test_linked_only_keeps_interactions_on_linked_items(tmp_path):
    from memrec.runs import prepare_split
    from memrec.training.config import DataConfig
    data = write_recbole(tmp_path / "films")
    rows = [(u, i, t) for t, (u, i) in enumerate([(u, i) for u in range(6) for i in (10, 11, 12, 14, 99)])]
    (data / "films.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                      + "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows))
    _, everything = prepare_split(data, DataConfig(split="loo", n_negatives=0))
    _, linked = prepare_split(data, DataConfig(split="loo", n_negatives=0, linked_only=True))
    assert sorted(everything.train.items.raw.tolist()) == [10, 11, 12, 14, 99]
    assert sorted(linked.train.items.raw.tolist()) == [10, 11, 12]          # 14, 99 have no link
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "plain.inter").write_text((data / "films.inter").read_text())
    with pytest.raises(DataError, match="no knowledge graph with item links"):
        prepare_split(tmp_path / "plain", DataConfig(linked_only=True))
