"""KSR on knowledge graphs as they come (issue 23): slots whatever the direction a KG stores an
attribute in, no silent KSR without knowledge, and one command from a KG folder to a trained KSR
(TransE trained into the run folder, or reused by content hash)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.knowledge import KnowledgeGraph
from memrec.data.splits import leave_one_out
from memrec.errors import ConfigError, DataError
from memrec.knowledge_runs import load_transe
from memrec.recommender import Recommender
from memrec.training.config import load_config

from .conftest import shared_path
from .kg_fixtures import SLOTS, write_multihop, write_ripplenet

#: the smallest KSR the CLI tests train (TransE follows model.kg_dim)
SMALL_KSR = ["--set", "model.kg_dim=8", "--set", "model.hidden=8", "--set", "model.dim=8",
             "--set", "model.out_dim=4", "--set", "train.epochs=2", "--set", "train.pretrain_epochs=1",
             "--set", "train.n_negatives=1", "--set", "data.n_negatives=0", "--no-progress"]


@pytest.fixture(autouse=True)
def fresh_transe_cache(tmp_path, monkeypatch):
    """Each test its own TransE cache: whether a run trains or reuses never depends on test order."""
    monkeypatch.setenv("MEMREC_CACHE", str(tmp_path / "cache"))


def train_ksr(data, out, *extra):
    return CliRunner().invoke(main, ["train", "ksr", "--data", str(data), "--out", str(out), *SMALL_KSR, *extra])


# -- the slot rule ------------------------------------------------------------------------------
def test_slots_are_the_item_touching_relations_read_item_first(tmp_path):
    graph = KnowledgeGraph.load(write_multihop(tmp_path / "films"))
    slots = graph.item_relations()
    # genre.films is stored genre → film: read as genre.films⁻¹; person.born_in, location.country
    # and genre.parent never touch an item; film.director also has non-item films (8 of 38)
    assert slots.names(graph.relations) == SLOTS
    assert slots.inverse.tolist() == [True, False]
    assert slots.signs().tolist() == [-1.0, 1.0]


def test_inverse_direction_repeating_a_kept_relation_adds_no_slot(tmp_path):
    """Freebase stores both directions (film.film.genre and its inverse): one slot, item-first."""
    rows = [(f"f{i}", "film.genre", f"g{i % 2}") for i in range(6)]
    rows += [(f"g{i % 2}", "genre.films", f"f{i}") for i in range(6)]          # the same pairs
    rows += [(f"d{i % 3}", "director.films", f"f{i}") for i in range(6)]       # a new fact, backwards
    link = pd.DataFrame({"item": range(6), "entity": [f"f{i}" for i in range(6)]})
    graph = KnowledgeGraph.from_frames(pd.DataFrame(rows, columns=["head", "relation", "tail"]), link)
    assert graph.item_relations().names(graph.relations) == ["film.genre", "director.films⁻¹"]


def test_a_graph_with_only_entity_triples_says_why_there_is_no_slot(tmp_path):
    graph = KnowledgeGraph.load(write_multihop(tmp_path / "films", entity_only=True))
    with pytest.raises(DataError) as error:
        graph.require_item_relations()
    message = str(error.value)
    assert "\n" not in message
    assert "no item is linked to one of its entities (its 30 item links name entities that occur in no triple)" in message
    assert "3 relations (person.born_in, location.country, genre.parent)" in message
    assert 'model.kg = "none"' in message


def test_too_rare_relations_name_the_options_that_relax_the_rule():
    rows = [(f"i{k}", "film.genre", "g0") for k in range(2)]                  # 2 of the 12 linked items
    rows += [(f"i{k}", "film.director", "d0") for k in range(2, 12)]          # 10 items, but mostly
    rows += [(f"x{k}", "film.director", f"d{k % 3}") for k in range(40)]      # films that are no items
    rows += [(f"d{k}", "person.born_in", "c0") for k in range(3)]
    link = pd.DataFrame({"item": range(12), "entity": [f"i{k}" for k in range(12)]})
    graph = KnowledgeGraph.from_frames(pd.DataFrame(rows, columns=["head", "relation", "tail"]), link)
    with pytest.raises(DataError) as error:
        graph.require_item_relations(min_item_share=0.25)
    message = str(error.value)
    assert "\n" not in message
    assert "12 of its 55 triples (21.8%) touch one of the 12 linked items" in message
    assert "≥ 50% of its triples (data.min_head_share) while touching ≥ 3 items (data.min_item_share = 0.25)" in message
    assert "closest: film.director: 10 items, 20% of its triples; film.genre: 2 items, 100% of its triples" in message
    # each option it names relaxes the rule
    assert graph.require_item_relations(min_item_share=0.1).names(graph.relations) == ["film.genre"]
    assert graph.require_item_relations(min_head_share=0.1, min_item_share=0.25).names(graph.relations) == ["film.director"]


def test_transe_vector_of_an_inverse_slot_is_minus_r(tmp_path):
    graph = KnowledgeGraph.load(write_multihop(tmp_path / "films"))
    out = tmp_path / "transe"
    config = load_config("transe", overrides=["train.epochs=1", "model.dim=4", "data.test_frac=0",
                                              "data.valid_frac=0"])
    from memrec.runs import train_run
    train_run(config, tmp_path / "films", out, echo=lambda line: None)
    vectors = load_transe(out)
    genre, director = (graph.relations.to_index([name])[0] for name in ("genre.films", "film.director"))
    assert vectors.slot_names() == SLOTS
    assert torch.equal(vectors.slot_keys(), torch.stack([-vectors.relation[genre], vectors.relation[director]]))
    exported = np.loadtxt(out / "export" / "r_matrix.txt")               # the official code's input
    np.testing.assert_allclose(exported, vectors.slot_keys().numpy(), rtol=1e-5, atol=1e-6)
    assert json.loads((out / "results.json").read_text())["item_relations"] == SLOTS


# -- one command --------------------------------------------------------------------------------
def test_ksr_trains_from_one_command_and_explains_with_its_relations(tmp_path):
    data = write_multihop(tmp_path / "films")
    result = train_ksr(data, tmp_path / "ksr")
    assert result.exit_code == 0, result.output
    assert "TransE pretraining: training TransE on" in result.output
    assert f"2 memory slots: {', '.join(SLOTS)}" in result.output
    transe = tmp_path / "ksr" / "transe"
    assert (transe / "results.json").is_file() and (transe / "content_hash.json").is_file()
    rec = Recommender.load(tmp_path / "ksr")
    model = rec.model_
    assert model.entry_labels() == SLOTS
    vectors = load_transe(transe)
    assert torch.equal(model.relation_keys, vectors.slot_keys())          # −r for genre.films⁻¹
    genre = vectors.graph.relations.to_index(["genre.films"])[0]
    assert torch.equal(model.relation_keys[0], -vectors.relation[genre])
    assert not bool(model.linked[torch.as_tensor(rec.saved_.items.to_index([130]))])   # an unlinked item
    explained = CliRunner().invoke(main, ["recommend", str(tmp_path / "ksr"), "--user", "3", "-k", "2", "--explain"])
    assert explained.exit_code == 0, explained.output
    assert "relation genre.films⁻¹ (" in explained.output and "relation film.director (" in explained.output


def test_a_second_run_reuses_transe_by_content_hash(tmp_path):
    data = write_multihop(tmp_path / "films")
    first = train_ksr(data, tmp_path / "a")
    assert first.exit_code == 0, first.output
    second = train_ksr(data, tmp_path / "b", "--seed", "1")            # KSR's seed: the same TransE
    assert second.exit_code == 0, second.output
    assert "TransE pretraining: reusing the run cached for this graph and recipe" in second.output
    assert "TransE pretraining: epoch" not in second.output
    assert torch.equal(load_transe(tmp_path / "a" / "transe").entity, load_transe(tmp_path / "b" / "transe").entity)
    third = train_ksr(data, tmp_path / "c", "--set", "model.kg_dim=4")  # another TransE setting: retrained
    assert third.exit_code == 0, third.output
    assert "TransE pretraining: training TransE on" in third.output
    resumed = CliRunner().invoke(main, ["train", "ksr", "--data", str(data), "--out", str(tmp_path / "a"),
                                        "--resume"])
    assert resumed.exit_code == 0 and "is finished" in resumed.output


def test_a_graph_with_only_entity_triples_stops_one_command_with_exit_2(tmp_path):
    result = train_ksr(write_multihop(tmp_path / "films", entity_only=True), tmp_path / "ksr")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("memrec: error:")]   # after the step lines
    assert errors == [lines[-1]] and "gives KSR no memory slot: no item is linked" in lines[-1]
    assert "Traceback" not in result.output and not (tmp_path / "ksr").exists()   # nothing written


def test_ksr_on_the_preprocessed_ripplenet_files_from_one_command(tmp_path):
    result = train_ksr(write_ripplenet(tmp_path / "music"), tmp_path / "ksr")
    assert result.exit_code == 0, result.output
    assert "note: ratings_final.txt: 150 label-1 rows are the interactions; 150 label-0 rows" in result.output
    assert Recommender.load(tmp_path / "ksr").model_.entry_labels() == ["0⁻¹", "1"]


# -- no silent fallback -------------------------------------------------------------------------
def test_ksr_without_knowledge_is_an_error_unless_the_ablation_is_asked_for(tmp_path, monkeypatch):
    import memrec.training.pretrain as pretrain
    from memrec.data.synthetic import SynthConfig, generate
    split = leave_one_out(generate(SynthConfig(n_users=30, n_items=40, seed=1)))
    small = dict(dim=8, hidden=8, kg_dim=4, out_dim=4)
    train = {"epochs": 1, "pretrain_epochs": 1, "batch_size": 256, "n_negatives": 1}
    pretrained = []

    class Recording(pretrain.Trainer):
        def fit(self, model, *args, **kwargs):
            pretrained.append(type(model).__name__)
            return super().fit(model, *args, **kwargs)

    monkeypatch.setattr(pretrain, "Trainer", Recording)
    with pytest.raises(ConfigError, match='KSR has no knowledge-graph vectors.*model.kg = "none"'):
        Recommender("ksr", **small, train=train).fit(split.train)
    assert pretrained == []                     # refused before the BPR pretraining, not after it
    with pytest.raises(ConfigError, match="KSR has no knowledge-graph vectors"):     # no pretraining step either
        Recommender("ksr", **small, train={**train, "pretrain_epochs": 0}).fit(split.train)
    ablation = Recommender("ksr", **small, kg="none", train=train).fit(split.train)
    assert ablation.model_.entry_labels()[:2] == ["learned slot 0", "learned slot 1"]
    with pytest.raises(ConfigError, match="drop one of the two"):
        Recommender("ksr", **small, kg="none", transe=str(tmp_path)).fit(split.train)


def test_ksr_on_a_dataset_without_a_graph_is_a_one_line_error(tmp_path):
    data = tmp_path / "plain.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{(u * 7 + k) % 20},{k}\n"
                                                      for u in range(10) for k in range(5)))
    result = train_ksr(data, tmp_path / "ksr")
    assert result.exit_code == 2 and "KSR needs a knowledge graph and this dataset has none" in result.output
    ablation = train_ksr(data, tmp_path / "ablation", "--set", "model.kg=none")
    assert ablation.exit_code == 0, ablation.output


def test_model_transe_in_a_config_file_is_relative_to_that_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "ksr.toml").write_text('[model]\nname = "ksr"\ntranse = "../runs/transe"\n')
    monkeypatch.chdir(tmp_path / "configs")
    assert load_config(path="ksr.toml").model_params["transe"] == str(tmp_path / "runs" / "transe")
    monkeypatch.chdir(tmp_path)
    assert load_config(path="configs/ksr.toml").model_params["transe"] == str(tmp_path / "runs" / "transe")
    # on the command line a path is the shell's: relative to the working directory
    given = load_config(path="configs/ksr.toml", overrides=['model.transe="here/transe"'])
    assert given.model_params["transe"] == "here/transe"


# -- the shipped datasets keep their slots ------------------------------------------------------
ML100K_SLOTS = ["film.film.actor", "film.film.genre", "film.film.award_nomination", "film.film.directed_by",
                "film.film.produced_by", "film.film.subjects", "film.film.written_by", "film.film.country",
                "film.film.language", "film.film.rating", "film.film.production_companies",
                "film.film.award_won", "film.film.cinematography", "film.film.sequel"]
LASTFM_SLOTS = ["music.artist.origin", "film.person_or_entity_appearing_in_film.film", "film.actor.film",
                "music.musician.instruments_played", "people.person.place_of_birth", "music.artist.album",
                "event.agent.performance", "people.deceased_person.place_of_death", "people.person.profession",
                "music.album.genre", "award.competitor.award_nominations", "award.nominee.award_nominations"]


@pytest.mark.parametrize("parts, slots", [(("ml-100k", "recbole"), ML100K_SLOTS), (("lastfm-kg",), LASTFM_SLOTS)],
                         ids=["ml-100k", "lastfm-kg"])
def test_shipped_graphs_keep_the_slots_of_the_item_first_rule(parts, slots):
    """The slot lists before the rule knew directions (every one item-first): ML-100K's ten
    inverse relations (film.film_genre.films_in_this_genre, …, film.film.prequel) repeat kept ones."""
    graph = KnowledgeGraph.load(shared_path(*parts))
    kept = graph.item_relations()
    assert kept.names(graph.relations) == slots and not kept.inverse.any()


def test_tune_ksr_trains_transe_once_like_train_and_every_trial_reads_it(tmp_path):
    pytest.importorskip("optuna", reason="memrec tune needs the tune extra (optuna)")
    data = write_multihop(tmp_path / "films")
    out = tmp_path / "tune"
    sets = [arg for arg in SMALL_KSR if arg != "--no-progress"]
    result = CliRunner().invoke(main, ["tune", "ksr", "--data", str(data), "--trials", "2", "--seeds", "0",
                                       *sets, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("TransE pretraining: training TransE on") == 1
    assert (out / "transe" / "results.json").is_file()
    assert f'transe = "{(out / "transe").resolve()}"' in (out / "best.toml").read_text()
    seed = json.loads((out / "seed_0" / "run.json").read_text())["config"]
    assert seed["model"]["transe"] == str((out / "transe").resolve())
