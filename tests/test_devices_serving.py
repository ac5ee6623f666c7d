"""Devices after training: loading checkpoints onto a device, ``--device`` on the verbs that run
a saved model (evaluate, recommend, serve, state rebuild, stream), and the live engine's states.

On a CPU-only machine: a checkpoint written from a GPU is simulated by tagging its storages
``cuda:0`` as ``torch.save`` writes them (what a GPU-trained model's file holds); the serving path
is checked device-clean as the models are in ``test_devices.py`` (``meta`` the default device,
the model on the CPU: a tensor created without a device lands on ``meta`` and the first operation
mixing it with a CPU one fails). With ``MEMREC_TEST_DEVICE=cuda`` (or ``mps``) evaluation,
recommendation and live serving run on that device for real and must agree with the CPU.
"""

import contextlib
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.serialization
from click.testing import CliRunner
from fastapi.testclient import TestClient

import memrec.checkpoint
import memrec.recommender
import memrec.runs
import memrec.serving.app
from memrec.checkpoint import load_model
from memrec.cli import main
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.errors import CheckpointError, ConfigError
from memrec.models.capabilities import AnonymousScorer, Explainer, HistoryScorer
from memrec.recommender import Recommender
from memrec.serving.live import LiveModel, checkpoint_digest
from memrec.serving.store import Event, MemoryStore

from .serving_models import SERVABLE, write_run

SECOND_DEVICE = os.environ.get("MEMREC_TEST_DEVICE")
NO_CUDA = "this machine has CUDA: --device cuda is not an error here"
NO_SECOND_DEVICE = "set MEMREC_TEST_DEVICE=cuda (or mps) to run on a second device"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.csv"
    write_csv(generate(SynthConfig(n_users=40, n_items=300, mean_length=8, seed=5)), path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_file):
    """A finished ``memrec train`` run folder (BPR-MF, CPU)."""
    out = tmp_path_factory.mktemp("runs") / "bprmf"
    result = run("train", "bprmf", "--data", data_file, "--out", out, "--epochs", 1,
                 "--set", "model.dim=8", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def loads(monkeypatch):
    """The devices every ``load_model`` of the test was asked for (each caller's own name for it
    is wrapped, so the list shows what the verb passed down)."""
    asked = []
    real = memrec.checkpoint.load_model

    def spy(folder, device="cpu"):
        asked.append(device)
        return real(folder, device)
    for module in (memrec.checkpoint, memrec.runs, memrec.recommender, memrec.serving.app):
        monkeypatch.setattr(module, "load_model", spy)
    return asked


def _resolved_cpu(asked) -> bool:
    """The verb resolved ``--device cpu`` and passed the device on (the library's default is the
    string "cpu": a verb that dropped the option would pass that)."""
    return bool(asked) and all(isinstance(d, torch.device) and d.type == "cpu" for d in asked)


# -- loading ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def saved_as_if_on_cuda():
    """While active, ``torch.save`` records every CPU storage as living on ``cuda:0``: the file a
    model on a GPU writes. (A tagger ahead of torch's own; removed on exit.)"""
    def cuda_tag(storage):
        return "cuda:0" if storage.device.type == "cpu" else None
    torch.serialization.register_package(-1000, cuda_tag, lambda storage, location: None)
    try:
        yield
    finally:
        torch.serialization._package_registry[:] = [
            entry for entry in torch.serialization._package_registry if entry[1] is not cuda_tag]


def test_a_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path):
    on_cpu = write_run("rumf", tmp_path / "cpu")
    with saved_as_if_on_cuda():
        on_gpu = write_run("rumf", tmp_path / "gpu")
    if not torch.cuda.is_available():    # the file really names CUDA: read as saved, it fails here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(on_gpu / "model.pt", weights_only=True)
    loaded, reference = load_model(on_gpu), load_model(on_cpu)
    assert loaded.model.device == torch.device("cpu")
    for (name, got), want in zip(loaded.model.state_dict().items(), reference.model.state_dict().values()):
        assert torch.equal(got, want), name
    ids, _ = Recommender.load(on_gpu, device="cpu").recommend(["0", "3"], k=5)
    np.testing.assert_array_equal(ids, Recommender.load(on_cpu).recommend(["0", "3"], k=5)[0])


@pytest.mark.parametrize("name", ["rumf", "nmrn", "ksr", "itemknn"])
def test_loading_moves_every_parameter_and_buffer_to_the_device_asked_for(name, tmp_path):
    folder = write_run(name, tmp_path / name)
    model = load_model(folder, device=torch.device("meta")).model
    assert model.device.type == "meta"
    assert {t.device.type for t in (*model.parameters(), *model.buffers())} == {"meta"}
    assert not model.training
    assert load_model(folder, device="cpu").model.device == torch.device("cpu")
    assert Recommender.load(folder, device=torch.device("meta")).model_.device.type == "meta"


def test_a_device_this_machine_lacks_fails_before_the_checkpoint_is_read(tmp_path):
    with pytest.raises(ConfigError, match="choose auto, cpu, cuda, cuda:N or mps"):
        load_model(tmp_path / "missing", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device = 'cuda', but this machine has no CUDA device"):
            load_model(tmp_path / "missing", device="cuda")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "missing", device="cpu")


# -- --device on the verbs -------------------------------------------------------------------------
def test_evaluate_and_recommend_run_on_the_device_given(trained, tmp_path, loads):
    evaluated = run("evaluate", trained, "--json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    recorded = json.loads((trained / "results.json").read_text())["metrics"]
    metrics = json.loads(evaluated.output)
    assert metrics.keys() == recorded.keys()
    assert all(metrics[p] == pytest.approx(recorded[p]) for p in recorded)
    assert _resolved_cpu(loads)
    loads.clear()
    recommended = run("recommend", trained, "--user", "3", "-k", "5", "--device", "cpu")
    assert recommended.exit_code == 0 and len(recommended.output.splitlines()) == 6, recommended.output
    assert recommended.output == run("recommend", trained, "--user", "3", "-k", "5").output
    assert _resolved_cpu(loads)
    loads.clear()
    table = tmp_path / "all.csv"
    everyone = run("recommend", trained, "--all-users", "--out", table, "-k", "3", "--device", "cpu")
    assert everyone.exit_code == 0 and table.is_file(), everyone.output
    assert _resolved_cpu(loads)


def test_serve_loads_its_model_on_the_device_given(trained, tmp_path, monkeypatch, loads):
    import uvicorn
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    served = run("serve", trained, "--store", f"sqlite:///{tmp_path / 'state.db'}", "--device", "cpu")
    assert served.exit_code == 0, served.output
    assert _resolved_cpu(loads) and len(loads) == 2          # the check at start, then the app
    client = TestClient(apps[0])
    assert client.get("/healthz").json()["device"] == "cpu"
    item = str(Recommender.load(trained).saved_.items.raw[0])
    assert client.post("/v1/events", json={"user": "3", "item": item}).json() == {"applied": 1}
    assert len(client.get("/v1/users/3/recommendations", params={"k": 4}).json()["items"]) == 4
    loads.clear()
    rebuilt = run("state", "rebuild", trained, "--store", f"sqlite:///{tmp_path / 'state.db'}",
                  "--device", "cpu")
    assert rebuilt.exit_code == 0 and "replayed 1 events" in rebuilt.output
    assert _resolved_cpu(loads)


def test_serve_with_workers_hands_the_device_to_each_worker(trained, tmp_path, monkeypatch):
    import uvicorn
    for name in ("MEMREC_SERVE_RUN", "MEMREC_SERVE_STORE", "MEMREC_SERVE_READ_TOKEN",
                 "MEMREC_SERVE_DEVICE", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "")           # restored after the test: serve sets them
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    served = run("serve", trained, "--store", f"sqlite:///{tmp_path / 'state.db'}", "--workers", 2,
                 "--device", "cpu")
    assert served.exit_code == 0, served.output
    assert os.environ["MEMREC_SERVE_DEVICE"] == "cpu"
    os.rmdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    app = memrec.serving.app.create_app_from_env()
    assert TestClient(app).get("/healthz").json()["device"] == "cpu"


def test_stream_trains_and_recommends_on_the_device_given(data_file, tmp_path):
    out = tmp_path / "stream.json"
    result = run("stream", "pop", "--data", data_file, "--slices", 2, "--out", out,
                 "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["config"]["train"]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("verb,setting", [
    (["evaluate", "{run}"], "--device"),
    (["recommend", "{run}", "--user", "3"], "--device"),
    (["recommend", "{run}", "--all-users", "--out", "{tmp}/all.csv"], "--device"),
    (["serve", "{run}", "--store", "sqlite:///{tmp}/state.db"], "--device"),
    (["state", "rebuild", "{run}", "--store", "sqlite:///{tmp}/state.db"], "--device"),
    (["stream", "pop", "--data", "{data}", "--out", "{tmp}/stream.json"], "train.device"),
], ids=["evaluate", "recommend", "all-users", "serve", "state-rebuild", "stream"])
def test_an_unavailable_device_is_one_line_and_exit_2_before_any_work(verb, setting, trained, data_file,
                                                                      tmp_path):
    args = [a.format(run=trained, data=data_file, tmp=tmp_path) for a in verb]
    result = run(*args, "--device", "cuda")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"memrec: error: {setting} = 'cuda', but this machine has no CUDA device "
        "(or this torch build has no CUDA); use cpu or auto"], result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []                     # no table, store or results written
    bad_name = run(*args, "--device", "gpu")
    assert bad_name.exit_code == 2
    assert f"{setting} = 'gpu'; choose auto, cpu, cuda, cuda:N or mps" in bad_name.stderr


# -- the live engine: device-clean -----------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("servable")
    return {name: write_run(name, root / name) for name in SERVABLE}


def _serve_a_little(live: LiveModel) -> dict:
    """Events for a trained user and a newcomer, then every read the service has: what each
    returned."""
    live.observe([Event("2", "5"), Event("newcomer", "3"), Event("2", "9"), Event("newcomer", "11")])
    users = ("2", "newcomer", "7")
    return {"recommendations": [live.recommend(user, k=4, explain=True) for user in users]
            + [live.recommend_history(["3", "11", "4"], k=4, explain=True)],
            "memories": [live.memory(user).rows for user in users],
            "rebuild": live.rebuild()}


def _facade(rec: Recommender) -> dict:
    """The façade's reads that are not the live engine's."""
    answers = {"recommend": rec.recommend(["2", "7"], k=4),
               "recommend_all": rec.recommend_all(k=3, batch_size=5)}
    if isinstance(rec.model_, Explainer):
        answers["explain"] = rec.explain("2", ["1", "4"])
    if isinstance(rec.model_, AnonymousScorer) and isinstance(rec.model_, HistoryScorer):
        answers["session"] = rec.recommend_session(["3", "11"], k=4)
        answers["modes"] = rec.session_modes(["3", "11"], ["1", "4"])
    return answers


def _same_top_k(items, scores, expected_items, expected_scores, tol: float) -> None:
    """Close scores, and the same items up to the order of items whose scores tie: another
    device may break a tie the other way. The last run of tied scores may even tie with an item
    past the k-th place and list that one instead, so its items go unchecked (its scores are)."""
    scores, expected_scores = np.asarray(scores, dtype=float), np.asarray(expected_scores, dtype=float)
    np.testing.assert_allclose(scores, expected_scores, rtol=tol, atol=tol)
    assert len(items) == len(expected_items)
    tied = np.isclose(expected_scores[1:], expected_scores[:-1], rtol=tol, atol=tol)
    runs = np.split(np.arange(len(items)), np.flatnonzero(~tied) + 1)
    for positions in runs[:-1]:
        assert {str(items[i]) for i in positions} == {str(expected_items[i]) for i in positions}


def _same_entries(entries, expected, tol: float) -> None:
    """Two explanations of one item: the same kinds, close weights (ties in any order)."""
    assert sorted(e.kind for e in entries) == sorted(e.kind for e in expected)
    np.testing.assert_allclose(sorted(e.weight for e in entries), sorted(e.weight for e in expected),
                               rtol=tol, atol=tol)


def _agree(served: dict, expected: dict, tol: float) -> None:
    """The answers of :func:`_serve_a_little` on two devices (or two default devices) agree."""
    for got, want in zip(served["recommendations"], expected["recommendations"], strict=True):
        _same_top_k(got.items, got.scores, want.items, want.scores, tol)
        assert (got.events_seen, got.cold_start) == (want.events_seen, want.cold_start)
        explained = dict(zip(want.items, want.explanations))
        for item, entries in zip(got.items, got.explanations):
            if item in explained:
                _same_entries(entries, explained[item], tol)
    for got, want in zip(served["memories"], expected["memories"], strict=True):
        assert [label for label, _ in got] == [label for label, _ in want]
        for (_, vector), (_, wanted) in zip(got, want):
            assert (vector is None) == (wanted is None)
            if vector is not None:
                np.testing.assert_allclose(vector, wanted, rtol=tol, atol=tol)
    assert served["rebuild"] == expected["rebuild"]


def _agree_facade(answers: dict, expected: dict, tol: float) -> None:
    """The answers of :func:`_facade` on two devices (or two default devices) agree."""
    assert answers.keys() == expected.keys()
    for got, want in zip(zip(*answers["recommend"]), zip(*expected["recommend"]), strict=True):
        _same_top_k(*got, *want, tol)
    users, items, scores = answers["recommend_all"]
    np.testing.assert_array_equal(users, expected["recommend_all"][0])
    for got, want in zip(zip(items, scores), zip(*expected["recommend_all"][1:]), strict=True):
        _same_top_k(*got, *want, tol)
    for got, want in zip(answers.get("explain", []), expected.get("explain", []), strict=True):
        _same_entries(got, want, tol)
    if "session" in answers:
        _same_top_k(*answers["session"], *expected["session"], tol)
        for got, want in zip(answers["modes"], expected["modes"], strict=True):
            assert (got is None) == (want is None)
            if got is not None:
                _same_entries([got], [want], tol)


@pytest.mark.parametrize("name", SERVABLE)
def test_serving_creates_no_tensor_on_the_default_device(name, runs):
    expected = _serve_a_little(LiveModel(load_model(runs[name]), MemoryStore(), "x"))
    expected_facade = _facade(Recommender.load(runs[name]))
    live = LiveModel(load_model(runs[name]), MemoryStore(), "x")
    rec = Recommender.load(runs[name])
    with torch.device("meta"):
        served = _serve_a_little(live)
        facade = _facade(rec)
    _agree(served, expected, tol=1e-6)
    _agree_facade(facade, expected_facade, tol=1e-6)


# -- a second device -------------------------------------------------------------------------------
@pytest.mark.skipif(not SECOND_DEVICE, reason=NO_SECOND_DEVICE)
def test_evaluate_and_recommend_on_the_second_device_agree_with_the_cpu(trained, tmp_path):
    on_cpu = json.loads(run("evaluate", trained, "--json", "--device", "cpu").output)
    on_device = run("evaluate", trained, "--json", "--device", SECOND_DEVICE)
    assert on_device.exit_code == 0, on_device.output
    on_device = json.loads(on_device.output)
    assert on_device.keys() == on_cpu.keys()
    assert all(on_device[p] == pytest.approx(on_cpu[p], rel=1e-3, abs=1e-4) for p in on_cpu)
    users = [a for u in ("0", "3", "17") for a in ("--user", u)]
    printed = {device: _printed_top_k(run("recommend", trained, *users, "--device", device))
               for device in ("cpu", SECOND_DEVICE)}
    for got, want in zip(printed[SECOND_DEVICE], printed["cpu"], strict=True):
        _same_top_k(*got, *want, tol=2e-4)                  # printed with 4 decimals
    tables = {}
    for device, name in (("cpu", "cpu.csv"), (SECOND_DEVICE, "second.csv")):
        assert run("recommend", trained, "--all-users", "--out", tmp_path / name,
                   "--device", device).exit_code == 0
        tables[device] = pd.read_csv(tmp_path / name).groupby("user", sort=True)
    for (user, got), (_, want) in zip(tables[SECOND_DEVICE], tables["cpu"], strict=True):
        _same_top_k(got["item"].to_numpy(), got["score"].to_numpy(), want["item"].to_numpy(),
                    want["score"].to_numpy(), tol=1e-4)


def _printed_top_k(result) -> list[tuple[list[str], list[float]]]:
    """``memrec recommend --user ...``'s lists: per user, the items and their scores."""
    assert result.exit_code == 0, result.output
    lists = []
    for line in result.stdout.splitlines():
        if line.startswith("user "):
            lists.append(([], []))
        else:
            _, item, score = line.split()
            lists[-1][0].append(item)
            lists[-1][1].append(float(score))
    return lists


@pytest.mark.skipif(not SECOND_DEVICE, reason=NO_SECOND_DEVICE)
@pytest.mark.parametrize("name", SERVABLE)
def test_live_serving_on_the_second_device_agrees_with_the_cpu(name, runs):
    on_device = LiveModel(load_model(runs[name], SECOND_DEVICE), MemoryStore(), "x")
    assert on_device.model.device.type == torch.device(SECOND_DEVICE).type
    _agree(_serve_a_little(on_device), _serve_a_little(LiveModel(load_model(runs[name]), MemoryStore(), "x")),
           tol=1e-4)
    _agree_facade(_facade(Recommender.load(runs[name], SECOND_DEVICE)), _facade(Recommender.load(runs[name])),
                  tol=1e-4)
    # the store holds CPU bytes: the states the device's server wrote are read by a CPU server
    on_cpu = LiveModel(load_model(runs[name]), on_device.store, "x")
    for user in ("2", "newcomer"):
        got, want = on_cpu.recommend(user, k=4), on_device.recommend(user, k=4)
        _same_top_k(got.items, got.scores, want.items, want.scores, tol=1e-4)


@pytest.mark.skipif(not SECOND_DEVICE, reason=NO_SECOND_DEVICE)
@pytest.mark.parametrize("update", ["frozen", "online"])
def test_stream_on_the_second_device(update, data_file, tmp_path):
    small = ["model.dim=8", "model.slots=4", "train.epochs=1", "train.batch_size=64",
             "train.gan_pool=10", "train.gan_pretrain_epochs=1"]
    out = tmp_path / "stream.json"
    result = run("stream", "nmrn", "--data", data_file, "--slices", 2, "--update", update, "--out", out,
                 "--no-progress", "--device", SECOND_DEVICE, *sum((["--set", s] for s in small), []))
    assert result.exit_code == 0, result.output
    assert np.isfinite(json.loads(out.read_text())["mean"]["HR@10"])
