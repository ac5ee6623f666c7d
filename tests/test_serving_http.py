"""The HTTP service: answers, 4xx rules, tokens, metrics, the checkpoint rebuild (in-process, via
Starlette's test client), and the guarantees that need real processes: durability under
``kill -9``, 64 concurrent writers to one user, two servers on one Redis."""

import json
import sqlite3
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from memrec.checkpoint import load_model
from memrec.cli import main
from memrec.recommender import Recommender
from memrec.serving.app import create_app
from memrec.serving.live import LiveModel, checkpoint_digest
from memrec.serving.sqlite_store import SQLiteStore
from memrec.serving.store import MemoryStore

from .serving_helpers import serving, start_server, stop_server
from .serving_models import SERVABLE, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run("rumf", tmp_path_factory.mktemp("rumf") / "run")


@pytest.fixture
def client(run, tmp_path):
    return TestClient(create_app(run, f"sqlite:///{tmp_path / 'state.db'}", token=""))


def _replayed(run, events) -> LiveModel:
    """A fresh in-memory engine with ``events`` applied in order: what a log replays to."""
    live = LiveModel(load_model(run), MemoryStore(), checkpoint_digest(run))
    for e in events:
        live.observe([e])
    return live


# -- answers ---------------------------------------------------------------------------------------
def test_recommendations_equal_memrec_recommend_until_events_arrive(client, run):
    served = client.get("/v1/users/4/recommendations", params={"k": 5}).json()
    ids, scores = Recommender.load(run).recommend(["4"], k=5)
    assert [i["item"] for i in served["items"]] == [str(i) for i in ids[0]]
    np.testing.assert_allclose([i["score"] for i in served["items"]], scores[0], rtol=1e-5, atol=1e-5)
    out = CliRunner().invoke(main, ["recommend", str(run), "--user", "4", "-k", "5"]).output
    assert [line.split()[1] for line in out.splitlines()[1:]] == [i["item"] for i in served["items"]]
    assert client.post("/v1/events", json={"user": "4", "item": str(ids[0][0])}).json() == {"applied": 1}
    after = client.get("/v1/users/4/recommendations", params={"k": 5}).json()
    assert after["events_seen"] == served["events_seen"] + 1
    assert str(ids[0][0]) not in [i["item"] for i in after["items"]]


def test_new_user_after_events_equals_the_stateless_history(client):
    for item in ["3", "9", "1"]:
        client.post("/v1/events", json={"user": "visitor", "item": item, "timestamp": 5})
    served = client.get("/v1/users/visitor/recommendations", params={"k": 4, "explain": True}).json()
    stateless = client.post("/v1/recommendations", json={"history": ["3", "9", "1"], "k": 4,
                                                         "explain": True}).json()
    assert served["cold_start"] and served["items"] == stateless["items"]
    assert served["events_seen"] == 3 and served["user"] == "visitor" and stateless["user"] is None


def test_memory_shows_the_slots_and_changes_with_an_event(client):
    before = client.get("/v1/users/2/memory").json()
    assert before["state"] == "FeatureMemory" and before["kind"] == "slot" and before["known"]
    client.post("/v1/events", json={"events": [{"user": "2", "item": "5"}]})
    after = client.get("/v1/users/2/memory").json()
    assert [r["label"] for r in after["rows"]] == ["0", "1", "2", "3"]
    assert after["rows"] != before["rows"] and after["state_bytes"] > 0


def test_forget_deletes_events_and_state(client, tmp_path):
    client.post("/v1/events", json={"user": "ghost", "item": "3"})
    assert client.get("/v1/users/ghost/memory").status_code == 200
    assert client.delete("/v1/users/ghost").json() == {"user": "ghost", "forgotten": True}
    assert client.get("/v1/users/ghost/memory").status_code == 404
    rec = client.get("/v1/users/ghost/recommendations").json()
    assert rec["events_seen"] == 0 and rec["cold_start"]
    assert [e.user for e in SQLiteStore(tmp_path / "state.db").log()] == []


def test_health_docs_and_metrics(client, run):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "model": "rumf", "checkpoint": checkpoint_digest(run), "device": "cpu"}
    assert "/v1/events" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    client.post("/v1/events", json={"user": "1", "item": "2"})
    client.get("/v1/users/1/recommendations")
    text = client.get("/metrics").text
    assert 'memrec_requests_total{method="GET",route="/v1/users/{user}/recommendations",status="200"}' in text
    assert "memrec_request_seconds_bucket" in text and "memrec_events_applied_total" in text


# -- bad requests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 422, "JSON"),
    (json.dumps({"user": "1"}).encode(), 422, "item"),
    (json.dumps({"user": "1", "item": "3", "timestamp": "noon"}).encode(), 422, "timestamp"),
    (json.dumps({"user": "1", "item": "3", "colour": "red"}).encode(), 422, "colour"),
    (json.dumps({"events": [{"user": "1", "item": "3"}, {"user": "2", "item": "zzz"}]}).encode(),
     422, "zzz"),
])
def test_bad_event_bodies_are_422_and_store_nothing(client, tmp_path, body, status, words):
    answer = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status and words in json.dumps(answer.json())
    assert list(SQLiteStore(tmp_path / "state.db").log()) == []


def test_bad_reads_are_4xx(client):
    assert client.get("/v1/users/1/recommendations", params={"k": 0}).status_code == 422
    assert client.get("/v1/users/1/recommendations", params={"k": 16}).status_code == 422
    assert client.get("/v1/users/1/recommendations", params={"k": "ten"}).status_code == 422
    assert client.post("/v1/recommendations", json={"history": ["nope"]}).json()["detail"] == \
        "item not in the catalogue: nope"
    assert client.get("/v1/users/stranger/memory").status_code == 404
    assert client.post("/v1/events", content=b"x" * (3 << 20)).status_code == 413


def test_writes_need_the_token_and_reads_too_with_read_token(run, tmp_path):
    app = TestClient(create_app(run, f"sqlite:///{tmp_path / 's.db'}", token="s3cret"))
    event = {"user": "1", "item": "2"}
    assert app.post("/v1/events", json=event).status_code == 401
    assert app.post("/v1/events", json=event, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert app.delete("/v1/users/1").status_code == 401
    assert app.post("/v1/events", json=event, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert app.get("/v1/users/1/recommendations").status_code == 200        # reads are open
    guarded = TestClient(create_app(run, f"sqlite:///{tmp_path / 's.db'}", token="s3cret", read_token=True))
    assert guarded.get("/v1/users/1/recommendations").status_code == 401
    assert guarded.get("/v1/users/1/recommendations",
                       headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.get("/healthz").status_code == 200


def test_a_new_checkpoint_rebuilds_the_states_from_the_log(run, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    events = [("1", "2"), ("newbie", "4"), ("1", "7"), ("newbie", "9")]
    first = TestClient(create_app(run, url, token=""))
    for user, item in events:
        first.post("/v1/events", json={"user": user, "item": item})
    retrained = write_run("rumf", tmp_path / "retrained", seed=1)
    assert checkpoint_digest(retrained) != checkpoint_digest(run)
    second = TestClient(create_app(retrained, url, token=""))           # rebuilds at start
    assert SQLiteStore(tmp_path / "state.db").checkpoint() == checkpoint_digest(retrained)
    from memrec.serving.store import Event
    expected = _replayed(retrained, [Event(u, i) for u, i in events])
    for user in ["1", "newbie"]:
        got = second.get(f"/v1/users/{user}/recommendations", params={"k": 6}).json()
        want = expected.recommend(user, k=6)
        assert [i["item"] for i in got["items"]] == want.items
        np.testing.assert_allclose([i["score"] for i in got["items"]], want.scores, rtol=1e-5)
    assert first.post("/v1/events", json={"user": "1", "item": "3"}).status_code == 409  # stale


def test_state_rebuild_command(run, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    TestClient(create_app(run, url, token="")).post("/v1/events", json={"user": "1", "item": "2"})
    out = CliRunner().invoke(main, ["state", "rebuild", str(run), "--store", url])
    assert out.exit_code == 0 and "replayed 1 events into 1 states" in out.output
    bad = CliRunner().invoke(main, ["serve", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "missing" in bad.output


# -- real processes --------------------------------------------------------------------------------
def _post(base: str, path: str, body: dict, timeout: float = 10.0) -> int:
    request = urllib.request.Request(base + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as answer:
        return json.loads(answer.read())


def test_kill_9_loses_no_acknowledged_event(run, tmp_path):
    db = tmp_path / "state.db"
    base, process = start_server(run, store_url=f"sqlite:///{db}")
    acknowledged, stop = [], threading.Event()

    def stream():
        for n in range(100_000):
            if stop.is_set():
                return
            event = {"user": str(n % 3), "item": str(n % 15), "timestamp": n}
            try:
                if _post(base, "/v1/events", event, timeout=5) == 200:
                    acknowledged.append(event)
            except (urllib.error.URLError, ConnectionError, OSError):
                return

    writer = threading.Thread(target=stream)
    writer.start()
    while len(acknowledged) < 40 and writer.is_alive():
        threading.Event().wait(0.01)
    process.kill()                                             # SIGKILL mid-stream
    process.wait(timeout=10)
    stop.set()
    writer.join(timeout=20)
    logged = list(SQLiteStore(db).log())
    assert len(acknowledged) >= 40
    assert [e.timestamp for e in logged[:len(acknowledged)]] == [a["timestamp"] for a in acknowledged]
    assert len(logged) <= len(acknowledged) + 1                # at most the one in flight
    expected = _replayed(run, logged)
    with serving(run, store_url=f"sqlite:///{db}") as base:    # restart: states are whole
        for user in ["0", "1", "2"]:
            got = _get(base, f"/v1/users/{user}/recommendations?k=15&exclude_seen=false")
            np.testing.assert_allclose([i["score"] for i in got["items"]],
                                       expected.recommend(user, k=15, exclude_seen=False).scores, rtol=1e-5)


def test_64_concurrent_writers_to_one_user_equal_the_log_replayed(run, tmp_path):
    db = tmp_path / "state.db"
    with serving(run, store_url=f"sqlite:///{db}", extra_args=["--workers", "2"]) as base:
        with ThreadPoolExecutor(64) as pool:
            statuses = list(pool.map(lambda n: _post(base, "/v1/events", {"user": "7", "item": str(n % 15)}),
                                     range(64)))
        assert statuses == [200] * 64
        served = _get(base, "/v1/users/7/memory")
    logged = list(SQLiteStore(db).log())
    assert len(logged) == 64
    expected = _replayed(run, logged).memory("7")
    assert served["events_seen"] == expected.events_seen
    np.testing.assert_allclose([r["vector"] for r in served["rows"]], [v for _, v in expected.rows], atol=1e-4)


def test_two_servers_on_one_redis_see_each_others_writes(run, tmp_path):
    from .servers import redis_server
    with redis_server(tmp_path / "redis") as url:
        with serving(run, store_url=url) as first, serving(run, store_url=url) as second:
            before = _get(second, "/v1/users/3/memory")
            assert _post(first, "/v1/events", {"user": "3", "item": "11"}) == 200
            after = _get(second, "/v1/users/3/memory")
            assert after["events_seen"] == before["events_seen"] + 1 and after["rows"] != before["rows"]
            assert _post(second, "/v1/events", {"user": "new", "item": "2"}) == 200
            assert _get(first, "/v1/users/new/recommendations")["events_seen"] == 1


@pytest.mark.parametrize("name", SERVABLE)
def test_every_registered_model_answers_the_api(name, tmp_path):
    app = TestClient(create_app(write_run(name, tmp_path / name), f"sqlite:///{tmp_path / 's.db'}", token=""))
    assert app.get("/healthz").json()["model"] == name
    assert app.post("/v1/events", json={"events": [{"user": "2", "item": "4"}, {"user": "x", "item": "5"}]}
                    ).json() == {"applied": 2}
    for user in ("2", "x"):
        rec = app.get(f"/v1/users/{user}/recommendations", params={"k": 3, "explain": True}).json()
        assert len(rec["items"]) == 3 and rec["cold_start"] == (user == "x")
        memory = app.get(f"/v1/users/{user}/memory").json()
        assert memory["events_seen"] == rec["events_seen"] and memory["rows"]
    assert len(app.post("/v1/recommendations", json={"history": ["4", "5"], "k": 2}).json()["items"]) == 2
