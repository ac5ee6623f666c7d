"""The command line: the happy path end to end, and every bad input → exit 2, one line."""

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from memrec.cli import main
from memrec.recommender import Recommender
from memrec.data.synthetic import SynthConfig, generate, write_csv


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.csv"
    write_csv(generate(SynthConfig(n_users=80, n_items=300, mean_length=15, seed=2)), path)
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def assert_user_error(result, fragment, *, after_steps=False):
    """Exit 2 with one error line on stderr. ``after_steps``: an error found in the data (while
    or after reading it) may follow the progress lines of the steps that ran ("loading X…",
    "read … in 0.1s"); nothing else may."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    *steps, error = lines
    assert error.startswith("memrec: error:"), result.stderr
    assert fragment in error, error
    if after_steps:
        assert all(line.endswith("…") or re.search(r" in \d+\.\ds$", line) for line in steps), result.stderr
    else:
        assert not steps, result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("runs") / "bprmf"
    result = run("train", "bprmf", "--data", data_file, "--out", out, "--epochs", 2,
                 "--set", "model.dim=8", "--no-progress")
    assert result.exit_code == 0, result.output
    return out, result


def test_train_writes_results_json_with_the_documented_keys(trained):
    out, result = trained
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"model", "data", "split", "params", "best_epoch", "train_seconds", "metrics"}
    assert results["model"] == "bprmf" and results["split"] == "loo"
    assert results["params"] == {"dim": 8}
    accuracy = {f"{m}@{k}" for m in ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP")
                for k in (5, 10, 20)} | {"AUC"}
    catalogue = {f"{m}@{k}" for m in ("Coverage", "Gini", "Novelty", "AvgPop") for k in (5, 10, 20)}
    assert set(results["metrics"]["full"]) == accuracy | catalogue
    assert set(results["metrics"]["sampled"]) == accuracy     # 100 candidates: no catalogue to cover
    full = results["metrics"]["full"]
    assert 0 < full["Coverage@5"] <= full["Coverage@20"] <= 1 and 0 <= full["Gini@10"] < 1
    assert full["Novelty@10"] > 0 and full["AvgPop@10"] > 0
    assert "HR" in result.output  # the printed table
    table = result.output.split("beyond accuracy")[1].splitlines()
    assert table[1].split() == ["protocol", "K", "Coverage", "Gini", "Novelty", "AvgPop"]
    assert [line.split()[:2] for line in table[2:5]] == [["full", "5"], ["full", "10"], ["full", "20"]]


def test_evaluate_reproduces_the_run_metrics(trained):
    out, _ = trained
    result = run("evaluate", out, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    saved = json.loads((out / "results.json").read_text())["metrics"]
    assert metrics["full"]["NDCG@10"] == pytest.approx(saved["full"]["NDCG@10"])
    assert metrics["sampled"]["HR@10"] == pytest.approx(saved["sampled"]["HR@10"])


def test_recommend_prints_k_items(trained):
    out, _ = trained
    result = run("recommend", out, "--user", "3", "-k", "4")
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]) == 4


def test_models_lists_the_registry():
    result = run("models")
    assert result.exit_code == 0
    assert {line.split()[0] for line in result.stdout.splitlines()} >= {"pop", "itemknn", "rp3beta", "ease", "bprmf",
                                                                       "transe"}


def test_every_verb_is_registered_and_both_module_entry_points_run():
    """The CLI is a package of verb-group modules; importing ``memrec.cli`` registers them all,
    and ``python -m memrec`` / ``python -m memrec.cli`` (benchmarks use the latter) run it."""
    import os
    import subprocess
    import sys
    assert set(main.commands) == {"train", "evaluate", "recommend", "stream", "models", "data", "demo",
                                  "serve", "state", "tune", "report"}
    assert set(main.commands["state"].commands) == {"rebuild"}
    assert set(main.commands["data"].commands) == {"info", "sessions", "synth", "fetch"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for module in ("memrec", "memrec.cli"):
        done = subprocess.run([sys.executable, "-m", module, "models"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "transe" in done.stdout.split()


def test_data_info_and_synth(tmp_path):
    out = tmp_path / "s.csv"
    assert run("data", "synth", out, "--users", 50, "--items", 60, "--seed", 1).exit_code == 0
    result = run("data", "info", out)
    assert result.exit_code == 0, result.output
    assert "users         50" in result.stdout and "items" in result.stdout and "density" in result.stdout


def test_existing_run_dir_is_never_overwritten(trained, data_file):
    out, _ = trained
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = run("train", "pop", "--data", data_file, "--out", out)
    assert_user_error(result, "already exists")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def log_epochs(out):
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_regression_cli_resume_continues_an_interrupted_run(data_file, tmp_path):
    """Resume must run the missing epochs (not reload a finished run): a run of 3 epochs
    stopped after epoch 1 (simulated: a 1-epoch run whose record then says 3 and whose results
    are removed), resumed with the same options, ends with the weights and metrics of 3 epochs
    straight."""
    common = ["--data", data_file, "--set", "model.dim=8", "--no-progress"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert run("train", "bprmf", "--out", straight, "--epochs", 3, *common).exit_code == 0
    assert run("train", "bprmf", "--out", cut, "--epochs", 1, *common).exit_code == 0
    assert log_epochs(cut) == [1]
    record = json.loads((cut / "run.json").read_text())
    record["config"]["train"]["epochs"] = 3
    (cut / "run.json").write_text(json.dumps(record))
    (cut / "results.json").unlink()
    result = run("train", "bprmf", "--out", cut, "--epochs", 3, "--resume", *common)
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 1" in result.stderr
    assert "epoch 2/3" in result.stderr and "epoch 3/3" in result.stderr
    assert log_epochs(cut) == [1, 2, 3]
    expected = Recommender.load(straight).model_.state_dict()
    got = Recommender.load(cut).model_.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    a = json.loads((straight / "results.json").read_text())
    b = json.loads((cut / "results.json").read_text())
    assert a["metrics"] == b["metrics"] and a["best_epoch"] == b["best_epoch"]


def split_arrays(out):
    with np.load(out / "split.npz") as npz:
        return {name: npz[name] for name in npz.files}


def test_regression_seed_reseeds_training_not_the_split(data_file, tmp_path):
    """``--seed`` is the training seed (train.seed); the split, with its fixed negatives, is
    ``data.seed``'s, set only by ``--set data.seed=`` or the config. Both are in results.json."""
    common = ["train", "bprmf", "--data", data_file, "--epochs", 1, "--set", "model.dim=8", "--no-progress"]
    for seed in (1, 2):
        assert run(*common, "--out", tmp_path / f"s{seed}", "--seed", seed).exit_code == 0
    one, two = split_arrays(tmp_path / "s1"), split_arrays(tmp_path / "s2")
    assert one.keys() == two.keys() and "test_negatives.negatives" in one
    assert all(np.array_equal(one[k], two[k]) for k in one)
    seeds = [json.loads((tmp_path / f"s{s}" / "results.json").read_text())["seeds"] for s in (1, 2)]
    assert seeds == [{"train": 1, "data": 0}, {"train": 2, "data": 0}]
    w1 = Recommender.load(tmp_path / "s1").model_.state_dict()
    w2 = Recommender.load(tmp_path / "s2").model_.state_dict()
    assert not all(torch.equal(w1[k], w2[k]) for k in w1)          # training did change
    # the split seed is its own setting
    assert run(*common, "--out", tmp_path / "d5", "--seed", 1, "--set", "data.seed=5").exit_code == 0
    other = split_arrays(tmp_path / "d5")
    assert not np.array_equal(other["test_negatives.negatives"], one["test_negatives.negatives"])
    assert json.loads((tmp_path / "d5" / "results.json").read_text())["seeds"] == {"train": 1, "data": 5}


@pytest.mark.parametrize("args, fragment", [
    (["train", "nosuchmodel", "--data", "{data}", "--out", "{tmp}/r"], "unknown model 'nosuchmodel'"),
    (["train", "pop", "--data", "{tmp}/missing.csv", "--out", "{tmp}/r"], "no such file or directory"),
    (["train", "bprmf", "--data", "{data}", "--out", "{tmp}/r", "--set", "model.size=3"], "has no parameter 'size'"),
    (["train", "bprmf", "--data", "{data}", "--out", "{tmp}/r", "--set", "train.lrate=3"], "unknown key train.lrate"),
    (["train", "pop", "--data", "{data}", "--out", "{tmp}/r", "--config", "{tmp}/nope.toml"], "no such config file"),
    (["evaluate", "{tmp}/no-run"], "no such run folder"),
    (["recommend", "{tmp}/no-run", "--user", "1"], "no such run folder"),
    (["data", "info", "{tmp}/missing.csv"], "no such file or directory"),
    (["data", "fetch", "no-such-dataset", "--dest", "{tmp}/d"], "no-such-dataset"),
])
def test_bad_input_exits_2_with_one_line(args, fragment, data_file, tmp_path):
    args = [a.format(data=data_file, tmp=tmp_path) for a in args]
    assert_user_error(run(*args), fragment)
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "results.json").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--set", "data.user_k=1000"], "empty"),
    (["--split", "given"], "no split of its own"),
])
def test_bad_data_exits_2_with_one_error_line_after_the_steps_that_ran(args, fragment, data_file, tmp_path):
    result = run("train", "pop", "--data", data_file, "--out", tmp_path / "r", *args)
    assert_user_error(result, fragment, after_steps=True)
    assert not (tmp_path / "r").exists()


def test_malformed_row_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating,timestamp\n1,2,5,100\n1,3,x,101\n")
    assert_user_error(run("train", "pop", "--data", bad, "--out", tmp_path / "r"), "bad.csv line 3",
                      after_steps=True)


def test_missing_column_is_reported(tmp_path):
    bad = tmp_path / "one.csv"
    bad.write_text("user_id,rating\n1,3\n2,4\n")
    assert_user_error(run("train", "pop", "--data", bad, "--out", tmp_path / "r"), "no item and user",
                      after_steps=True)


def test_corrupt_checkpoint_is_reported(trained, tmp_path):
    import shutil
    out, _ = trained
    copy = tmp_path / "corrupt"
    shutil.copytree(out, copy)
    (copy / "model.pt").write_bytes(b"garbage")
    assert_user_error(run("recommend", copy, "--user", "3"), "corrupt")
    (copy / "model.json").write_text("{not json")
    assert_user_error(run("evaluate", copy), "corrupt JSON")


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "evaluate", tmp_path / "no-run")
    assert result.exit_code != 0 and result.exception is not None


def test_recommend_explain_for_cmn(data_file, tmp_path):
    out = tmp_path / "cmn"
    result = run("train", "cmn", "--data", data_file, "--out", out, "--epochs", 1,
                 "--set", "model.dim=8", "--set", "model.hops=2", "--no-progress")
    assert result.exit_code == 0, result.output
    result = run("recommend", out, "--user", "3", "-k", "2", "--explain")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "attended:" in line]
    assert len(lines) == 2 and "user " in lines[0]
    weights = [float(part.split("(")[1].rstrip(")")) for part in lines[0].split("attended:")[1].split(",")]
    assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1.0 + 1e-6


def test_explain_on_a_model_without_attention_is_a_clear_error(trained):
    out, _ = trained
    assert_user_error(run("recommend", out, "--user", "3", "--explain"), "no attention to explain")


@pytest.fixture(scope="module")
def session_run(tmp_path_factory):
    """A tiny SR-GNN-style session folder made by `data sessions` from a raw Diginetica log,
    and a STAMP run trained on it."""
    import numpy as np
    root = tmp_path_factory.mktemp("sessions")
    rng = np.random.default_rng(0)
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for s in range(1, 301):
        start, day = rng.integers(0, 20), 1 + s * 27 // 300
        lines += [f"{s};NA;{100 + (start + k) % 20};{k * 10};2016-05-{day:02d}" for k in range(4)]
    (root / "views.csv").write_text("\n".join(lines) + "\n")
    folder = root / "digi"
    result = run("data", "sessions", root / "views.csv", folder, "--format", "diginetica")
    assert result.exit_code == 0, result.output
    out = root / "stamp"
    result = run("train", "stamp", "--data", folder, "--out", out, "--epochs", 2,
                 "--set", "model.dim=8", "--set", "data.valid_from_train=true", "--no-progress")
    assert result.exit_code == 0, result.output
    return out, result


def test_stamp_trains_and_tests_on_session_files(session_run):
    out, result = session_run
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "session" and set(results["metrics"]) == {"session"}
    assert "valid session HR@20" in result.output


def test_recommend_for_a_live_session_with_attention(session_run):
    out, _ = session_run
    result = run("recommend", out, "--session", "1,2,3", "-k", 3, "--explain")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "session 1,2,3"
    assert lines[1].startswith("  attention per click, strongest first: ")
    assert {c.split(" ")[0] for c in lines[1].split(": ")[1].split(", ")} == {"1", "2", "3"}
    assert len(lines) == 2 + 3


@pytest.mark.parametrize("args, fragment", [
    (["--session", "1,999999"], "unknown item: 999999"),
    (["--session", " , "], "at least one click"),
])
def test_bad_session_exits_2_with_one_line(session_run, args, fragment):
    out, _ = session_run
    assert_user_error(run("recommend", out, *args), fragment)


def test_session_on_a_user_model_is_a_clear_error(trained):
    out, _ = trained
    assert_user_error(run("recommend", out, "--session", "1,2"), "recommends for known users")


def test_recommend_explain_for_a_known_session(session_run):
    out, _ = session_run
    result = run("recommend", out, "--user", 0, "-k", 2, "--explain")
    assert result.exit_code == 0, result.output
    assert result.output.count("attended: click ") == 2


@pytest.mark.parametrize("model,kind", [("rumi", "item"), ("rumf", "slot")])
def test_recommend_explain_for_rum(data_file, tmp_path, model, kind):
    out = tmp_path / model
    result = run("train", model, "--data", data_file, "--out", out, "--epochs", 1,
                 "--set", "model.dim=8", "--set", "model.slots=4", "--no-progress")
    assert result.exit_code == 0, result.output
    result = run("recommend", out, "--user", "3", "-k", "2", "--explain")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "attended:" in line]
    assert len(lines) == 2 and f"{kind} " in lines[0]
    for line in lines:  # the memory's attention for that item: a distribution over ≤ 4 slots
        weights = [float(p.split("(")[1].rstrip(")")) for p in line.split("attended:")[1].split(",")]
        assert len(weights) <= 4 and weights == sorted(weights, reverse=True)
        assert sum(weights) == pytest.approx(1.0, abs=0.02)


def test_models_lists_transe_and_declared_capabilities():
    result = run("models", "--capabilities")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert "transe" in names and "stamp" in names
    stamp = lines[lines.index(next(line for line in lines if line.startswith("stamp "))) + 1]
    assert "stateful" in stamp and "sessions" in stamp and "explains clicks" in stamp
    cmn = lines[lines.index(next(line for line in lines if line.startswith("cmn "))) + 1]
    assert "item-state" in cmn and "explains users" in cmn and "stateful" not in cmn


# -- first-hour fixes (issue 21): bad values, resume keeps its budget, Ctrl-C -------------------
@pytest.mark.parametrize("option, phrase", [
    ("model.dim=-5", "model.dim must be a non-negative finite number, got -5"),
    ("train.lr=nan", "train.lr must be a finite number, got nan"),
    ("train.epochs=0", "train.epochs must be positive, got 0"),
])
def test_regression_bad_values_are_one_line_errors_before_any_work(data_file, tmp_path, option, phrase):
    assert_user_error(run("train", "bprmf", "--data", data_file, "--out", tmp_path / "r", "--set", option),
                      phrase)
    assert not (tmp_path / "r").exists()


def test_regression_resuming_a_finished_run_changes_nothing(trained):
    out, _ = trained
    before = (out / "results.json").read_bytes()
    result = run("train", "bprmf", "--data", "anything", "--out", out, "--resume")
    assert result.exit_code == 0 and "nothing to resume" in result.output
    assert (out / "results.json").read_bytes() == before


def test_regression_resume_keeps_the_recorded_budget_and_refuses_other_settings(data_file, tmp_path):
    out = tmp_path / "r"
    assert run("train", "bprmf", "--data", data_file, "--out", out, "--epochs", 3,
               "--set", "model.dim=8", "--no-progress").exit_code == 0
    (out / "results.json").unlink()                      # as if interrupted before the end
    assert_user_error(run("train", "bprmf", "--data", data_file, "--out", out, "--epochs", 9, "--resume"),
                      "train.epochs (9 vs 3)")
    resumed = run("train", "bprmf", "--data", data_file, "--out", out, "--resume", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert "/50" not in resumed.output and json.loads((out / "results.json").read_text())["best_epoch"] <= 3


def test_regression_recommend_k_over_the_catalogue_lists_only_recommendable_items(trained):
    out, _ = trained
    result = run("recommend", out, "--user", "3", "-k", 100_000)
    assert result.exit_code == 0 and "-inf" not in result.stdout
    assert "items are left to recommend" in result.stderr


def test_regression_ctrl_c_is_exit_130_naming_the_resume_command(data_file, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "memrec", "train", "bprmf", "--data", str(data_file),
                                "--out", str(out), "--epochs", "100000", "--set", "train.patience=0",
                                "--no-progress"], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("memrec: interrupted; continue the run with: memrec train bprmf")
    assert stderr.strip().endswith("--resume") and "Traceback" not in stderr


def test_models_name_shows_hyperparameters_defaults_and_shipped_configs():
    result = run("models", "rumf")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["slots", "int", "20"] for line in lines)
    assert "shipped config configs/rumf_ml-100k.toml" in result.output
    assert "training defaults" in result.output and "loss='bce'" in result.output


def test_model_json_and_run_json_record_every_effective_parameter(trained):
    out, _ = trained
    assert json.loads((out / "model.json").read_text())["params"] == {"dim": 8, "item_bias": False,
                                                                        "init_std": 0.1}
    assert json.loads((out / "run.json").read_text())["config"]["model"]["init_std"] == 0.1


def test_demo_shows_a_memory_network_explained_and_reuses_finished_runs(tmp_path):
    first = run("demo", "--out", tmp_path, "--models", "pop,rumf")
    assert first.exit_code == 0, first.output
    assert "rumf for user 0: each recommendation with the memory slots it attended to" in first.stdout
    assert "attended: slot" in first.stdout and "memrec serve" in first.stdout
    second = run("demo", "--out", tmp_path, "--models", "pop,rumf")
    assert "reused the finished runs" in second.stderr and "pop, rumf" in second.stderr


def test_data_info_on_a_folder_names_the_file_it_read(tmp_path, data_file):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "ratings.csv").write_text(data_file.read_text())
    result = run("data", "info", folder)
    assert result.exit_code == 0, result.output
    assert f"read          {folder / 'ratings.csv'} (csv)" in result.stdout


# -- recommend --all-users (issue 21) ----------------------------------------------------------
def test_all_users_writes_every_users_top_k_as_recommend_lists_it(trained, tmp_path):
    import pandas as pd
    out, _ = trained
    result = run("recommend", out, "--all-users", "-k", 4, "--out", tmp_path / "recs.parquet")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "recs.parquet")
    rec = Recommender.load(out)
    n_users = len(rec.saved_.users)
    written = f"{4 * n_users} rows written to {tmp_path / 'recs.parquet'}"
    assert result.stdout.strip() == f"top-4 for {n_users} users: {written}"
    assert list(table.columns) == ["user", "rank", "item", "score"] and len(table) == 4 * n_users
    ids, scores = rec.recommend(["3"], k=4)
    mine = table[table["user"] == 3]
    assert mine["rank"].tolist() == [1, 2, 3, 4] and mine["item"].tolist() == ids[0].tolist()
    assert mine["score"].to_numpy() == pytest.approx(scores[0])
    seen = set(zip(rec.saved_.users.to_raw(np.repeat(np.arange(n_users), np.diff(rec.saved_.seen_indptr))),
                   rec.saved_.items.to_raw(rec.saved_.seen_items)))
    assert not seen & set(zip(table["user"], table["item"]))          # known items are excluded
    csv = run("recommend", out, "--all-users", "-k", 4, "--out", tmp_path / "recs.csv")
    assert csv.exit_code == 0, csv.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "recs.csv"), table)


@pytest.mark.parametrize("args, fragment", [
    (["--all-users"], "--all-users needs --out"),
    (["--all-users", "--out", "{tmp}/recs.json"], ".json is neither"),
    (["--all-users", "--out", "{tmp}/recs"], "no suffix is neither"),
    (["--all-users", "--user", "3", "--out", "{tmp}/recs.csv"], "drop --user/--session"),
    (["--all-users", "--explain", "--out", "{tmp}/recs.csv"], "do not go with --all-users"),
    (["--user", "3", "--out", "{tmp}/recs.csv"], "add --all-users"),
    (["--all-users", "--out", "{tmp}/missing/recs.csv"], "does not exist"),
    (["--all-users", "--out", "{tmp}/taken.csv"], "already exists"),
    (["--all-users", "--out", "{tmp}/folder.csv"], "already exists"),
])
def test_all_users_bad_options_are_one_line_errors_before_any_work(trained, tmp_path, args, fragment):
    out, _ = trained
    (tmp_path / "taken.csv").write_text("mine\n")
    (tmp_path / "folder.csv").mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert_user_error(run("recommend", out, *[a.replace("{tmp}", str(tmp_path)) for a in args]), fragment)
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "taken.csv").read_text() == "mine\n"


def test_all_users_on_a_session_run_is_refused(session_run, tmp_path):
    out, _ = session_run
    assert_user_error(run("recommend", out, "--all-users", "--out", tmp_path / "recs.csv"),
                      "users are its training sessions")
    assert not (tmp_path / "recs.csv").exists()


def test_all_users_adds_titles_and_genres_from_u_item_beside_the_data(data_file, tmp_path):
    import pandas as pd
    folder = tmp_path / "ml"
    folder.mkdir()
    ratings = folder / "ratings.csv"
    ratings.write_text(data_file.read_text())
    items = sorted(pd.read_csv(ratings)["item"].unique())
    # ML-100K layout: |-separated, latin-1, genre flags named by u.genre
    (folder / "u.genre").write_text("Action|0\nCaf\u00e9 noir|1\n\n")
    (folder / "u.item").write_bytes("".join(
        f"{i}|Film {i} \u00e0 Paris|01-Jan-1995||http://x|{i % 2}|1\n" for i in items).encode("latin-1"))
    out = tmp_path / "pop"
    assert run("train", "pop", "--data", ratings, "--out", out).exit_code == 0
    result = run("recommend", out, "--all-users", "-k", 2, "--out", tmp_path / "recs.csv")
    assert result.exit_code == 0, result.output
    assert "with title, genres written to" in result.stdout
    table = pd.read_csv(tmp_path / "recs.csv")
    assert list(table.columns) == ["user", "rank", "item", "score", "title", "genres"]
    assert (table["title"] == "Film " + table["item"].astype(str) + " \u00e0 Paris").all()
    expected = np.where(table["item"] % 2 == 1, "Action|Caf\u00e9 noir", "Caf\u00e9 noir")
    assert (table["genres"] == expected).all()
