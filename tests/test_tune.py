"""``memrec tune``: search spaces, selection on validation only, resumable studies, the files."""

import csv
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

optuna = pytest.importorskip("optuna", reason="memrec tune needs the tune extra (optuna)")

from memrec import evaluation  # noqa: E402
from memrec.cli import main  # noqa: E402
from memrec.data.synthetic import SynthConfig, generate, write_csv  # noqa: E402
from memrec.errors import ConfigError  # noqa: E402
from memrec.models import REGISTRY, check_params  # noqa: E402
from memrec.training.config import load_config  # noqa: E402
from memrec.tuning.space import DEFAULT_SPACES, read_space, search_space  # noqa: E402


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.csv"
    write_csv(generate(SynthConfig(n_users=60, n_items=200, mean_length=10, seed=3)), path)
    return path


def _tune(*args):
    return CliRunner().invoke(main, ["tune", *map(str, args)], prog_name="memrec")


class _Trial:
    """A stand-in for an Optuna trial that draws each parameter's lowest value or first choice."""

    def suggest_categorical(self, name, choices):
        return choices[0]

    def suggest_int(self, name, low, high, log=False, step=1):
        return high

    def suggest_float(self, name, low, high, log=False, step=None):
        return high


@pytest.mark.parametrize("model", sorted(n for n, s in REGISTRY.items() if s.data == "interactions"))
def test_every_recommender_has_a_space_its_config_accepts(model):
    space = DEFAULT_SPACES[model]
    values = {p.key: p.suggest(_Trial()) for p in space}
    config = load_config(model, overrides=[f"{k}={v}" for k, v in values.items()])
    for key, value in values.items():
        section, name = key.split(".")
        assert (config.model_params if section == "model" else vars(config.train))[name] == value
    check_params(model, config.model_params)


def test_a_space_file_replaces_the_defaults_it_names(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[model]\ndim = {type = "categorical", choices = [8, 16]}\n'
                    '[train]\nlr = {type = "log", low = 1e-3, high = 1e-1}\n')
    space = {p.key: p for p in search_space("bprmf", path)}
    assert space["model.dim"].choices == (8, 16)
    assert space["train.lr"].kind == "float" and space["train.lr"].log and space["train.lr"].high == 0.1
    assert "train.weight_decay" in space                        # untouched defaults stay


@pytest.mark.parametrize("text, phrase", [
    ('[model]\nnope = {type = "float", low = 0, high = 1}\n', "model.nope: model 'bprmf' has no such model setting"),
    ('[train]\nlr = {type = "float", low = 1, high = 0}\n', "low must not exceed high"),
    ('[train]\nlr = {type = "log", low = 0, high = 1}\n', "a log scale needs low > 0"),
    ('[train]\nlr = {type = "float", low = 0, high = 1, choices = [1]}\n', "type 'float' takes no choices"),
    ('[train]\nlr = {type = "normal", low = 0, high = 1}\n', "unknown type 'normal'"),
    ('[data]\nseed = {type = "int", low = 0, high = 3}\n', "unknown table [data]"),
    ('[model]\ndim = 64\n', "expected an inline table with a type"),
])
def test_bad_space_files_are_named_errors(tmp_path, text, phrase):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        read_space("bprmf", path)
    assert phrase in str(error.value) and str(path) in str(error.value)


def test_tune_selects_on_validation_writes_its_files_and_never_reads_test_while_searching(
        data, tmp_path, monkeypatch):
    parts = []
    real_init = evaluation.Evaluator.__init__

    def spy(self, split, part, *args, **kwargs):
        parts.append(part)
        real_init(self, split, part, *args, **kwargs)

    monkeypatch.setattr(evaluation.Evaluator, "__init__", spy)
    out = tmp_path / "tune"
    result = _tune("ease", "--data", data, "--trials", 4, "--seeds", "0,1", "--out", out)
    assert result.exit_code == 0, result.output
    # the 4 trials validate; then the best trial's own run is tested once as seed 0's (it trained
    # those settings with seed 0), and as EASE is a closed form, it stands for seed 1 too
    assert parts[:4] == ["valid"] * 4 and parts[4:] == ["test"]
    assert "seed 1: ease is a closed form" in result.output and not (out / "seed_1").exists()
    assert not (out / "trial_runs").exists()                 # cleared once the seeds are trained

    with open(out / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 4 and {t["state"] for t in trials} == {"COMPLETE"}
    best = max(trials, key=lambda t: float(t["value"]))
    results = json.loads((out / "results.json").read_text())
    assert results["best_trial"] == int(best["number"])
    assert results["best_params"]["model.l2"] == pytest.approx(float(best["params_model.l2"]))
    assert results["test"]["seeds"] == [0, 1]
    ndcg = results["test"]["metrics"]["full"]["NDCG@10"]
    seed_runs = [json.loads((out / "seed_0" / "results.json").read_text())]
    assert ndcg["values"] == [seed_runs[0]["metrics"]["full"]["NDCG@10"]] * 2 and ndcg["std"] == 0
    for name in ("history.png", "importances.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # best.toml is a config `memrec train` accepts, and it reproduces the best settings
    retrained = CliRunner().invoke(main, ["train", "ease", "--data", str(data), "--config",
                                          str(out / "best.toml"), "--out", str(tmp_path / "again")])
    assert retrained.exit_code == 0, retrained.output
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["metrics"]["full"]["NDCG@10"] == pytest.approx(seed_runs[0]["metrics"]["full"]["NDCG@10"])


def test_a_trainable_model_retrains_every_seed(data, tmp_path):
    out = tmp_path / "tune"
    result = _tune("bprmf", "--data", data, "--trials", 1, "--seeds", "0,1", "--set", "train.epochs=1",
                   "--set", "model.dim=8", "--out", out)
    assert result.exit_code == 0, result.output
    runs = [json.loads((out / f"seed_{s}" / "results.json").read_text()) for s in (0, 1)]
    values = json.loads((out / "results.json").read_text())["test"]["metrics"]["full"]["NDCG@10"]["values"]
    assert values == [r["metrics"]["full"]["NDCG@10"] for r in runs] and values[0] != values[1]


def _train_again(run, tmp_path, name):
    """The seed run's recorded configuration trained afresh by `memrec train`: its results."""
    config = json.loads((run / "run.json").read_text())["config"]
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    again = CliRunner().invoke(main, ["train", config["model"]["name"], "--data", str(tmp_path / "data.csv"),
                                      "--config", str(path), "--out", str(tmp_path / name)])
    assert again.exit_code == 0, again.output
    return json.loads((tmp_path / name / "results.json").read_text())


@pytest.mark.parametrize("model,sets", [("bprmf", ["model.dim=8", "train.epochs=3"]),
                                        ("gru4rec", ["train.epochs=2"])])
def test_the_best_trials_run_is_the_first_seeds_and_equals_its_retraining(data, tmp_path, model, sets):
    out = tmp_path / "tune"
    result = _tune(model, "--data", data, "--trials", 3, "--seeds", "0,1",
                   *sum((["--set", s] for s in sets), []), "--out", out)
    assert result.exit_code == 0, result.output
    best = json.loads((out / "results.json").read_text())["best_trial"]
    assert f"seed 0: trial {best} trained these settings with this seed" in result.output
    assert "seed 1: retraining the best settings" in result.output
    kept = json.loads((out / "seed_0" / "results.json").read_text())
    assert kept["seeds"]["train"] == 0 and kept["train_seconds"] > 0
    assert (out / "seed_0" / "log.jsonl").is_file() and not (out / "trial_runs").exists()
    # retraining the recorded settings with seed 0 gives the same model, metric for metric
    again = _train_again(out / "seed_0", tmp_path, "again")
    assert again["metrics"] == kept["metrics"] and again["best_epoch"] == kept["best_epoch"]


def test_a_trial_with_another_seed_or_a_refit_keeps_no_run(data, tmp_path):
    out = tmp_path / "tune"
    result = _tune("bprmf", "--data", data, "--trials", 1, "--seeds", "1,2", "--set", "model.dim=8",
                   "--set", "train.epochs=1", "--out", out)            # the trial trained seed 0
    assert result.exit_code == 0, result.output
    assert "seed 1: retraining the best settings" in result.output and "trained these settings" not in result.output
    refit = _tune("bprmf", "--data", data, "--trials", 1, "--seeds", "0", "--set", "model.dim=8",
                  "--set", "train.epochs=1", "--set", "train.refit=true", "--out", tmp_path / "refit")
    assert refit.exit_code == 0, refit.output
    assert "seed 0: retraining the best settings" in refit.output


def test_a_second_tune_continues_the_stored_study(data, tmp_path):
    out = tmp_path / "tune"
    assert _tune("ease", "--data", data, "--trials", 2, "--seeds", "0", "--out", out).exit_code == 0
    result = _tune("ease", "--data", data, "--trials", 3, "--seeds", "0", "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 trial(s) already finished; continuing" in result.output
    assert "reusing the finished run" in result.output
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_a_killed_trial_is_retried_with_its_settings_and_its_seconds_still_count(data, tmp_path, monkeypatch):
    import time

    from memrec.tuning import study as tuning
    monkeypatch.setattr(tuning, "HEARTBEAT_S", 1)
    monkeypatch.setattr(tuning, "GRACE_S", 1)
    out = tmp_path / "tune"
    args = ("bprmf", "--data", data, "--seeds", "0", "--set", "train.epochs=2", "--set", "model.dim=8",
            "--out", out)
    assert _tune(*args, "--trials", 1).exit_code == 0
    # a second trial whose process was killed after 5 s: drawn, running, one heartbeat, then silence
    storage = tuning._with_heartbeat(f"sqlite:///{out / 'study.db'}")
    study = optuna.load_study(study_name="bprmf-data", storage=storage)
    killed = study.ask()
    drawn = {p.key: p.suggest(killed) for p in search_space("bprmf", None)}
    killed.set_user_attr("seconds", 5.0)
    storage.record_heartbeat(killed._trial_id)
    time.sleep(2.5)                                             # > GRACE_S: its process is dead
    result = _tune(*args, "--trials", 2)
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="bprmf-data", storage=f"sqlite:///{out / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == pytest.approx(drawn)                        # its settings, retried
    assert trials[2].user_attrs["seconds"] < 5.0                           # its own seconds, not the copy's
    assert tuning.seconds_spent(optuna.load_study(study_name="bprmf-data", storage=storage)) == pytest.approx(
        trials[0].user_attrs["seconds"] + 5.0 + trials[2].user_attrs["seconds"])  # the killed 5 s count


def test_a_retry_waiting_to_run_does_not_count_its_originals_seconds_twice():
    from memrec.tuning.study import seconds_spent
    study = optuna.create_study()
    study.add_trial(optuna.create_trial(value=0.1, user_attrs={"seconds": 2.0}))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"seconds": 5.0}))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs={"seconds": 5.0}))
    assert seconds_spent(study) == 7.0


def test_epochs_report_to_the_pruner(data, tmp_path):
    # a gradient model's trials report every validated epoch (what the median pruner reads)
    out = tmp_path / "tune"
    result = _tune("bprmf", "--data", data, "--trials", 2, "--seeds", "0", "--set", "train.epochs=3",
                   "--set", "model.dim=8", "--out", out)
    assert result.exit_code == 0, result.output
    assert "fixed by --set, not searched: model.dim" in result.output
    study = optuna.load_study(study_name="bprmf-data", storage=f"sqlite:///{out / 'study.db'}")
    for trial in study.trials:
        assert "model.dim" not in trial.params
        assert sorted(trial.intermediate_values) == [1, 2, 3]
        assert trial.value == pytest.approx(max(trial.intermediate_values.values()))


@pytest.mark.parametrize("args, phrase", [
    (["--seeds", "0,x"], "--seeds expects a comma list of integers"),
    (["--seeds", "1,1"], "--seeds expects distinct integers"),
    (["--set", "train.nope=1"], "unknown key train.nope"),
])
def test_bad_tune_options_fail_before_any_trial(data, tmp_path, args, phrase):
    result = _tune("ease", "--data", data, "--out", tmp_path / "tune", *args)
    assert result.exit_code == 2 and phrase in result.output
    assert not (tmp_path / "tune" / "study.db").exists()


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_the_time_budget_is_hard_kept_across_resumes_and_the_seeds_train_what_ran(data, tmp_path, clock):
    # a budget spent inside the first epoch: that trial stops after epoch 1 (its best epoch so far
    # counts), no other trial starts, and the seeds retrain 1 epoch without the clock
    out = tmp_path / "tune"
    args = ("bprmf", "--data", data, "--trials", 3, "--timeout", 0.001, "--seeds", "0",
            "--set", "train.epochs=4", "--set", "train.patience=0", "--set", "model.dim=8",
            "--set", f'train.clock="{clock}"', "--out", out)
    result = _tune(*args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="bprmf-data", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 1
    trial = study.trials[0]
    assert sorted(trial.intermediate_values) == [1]
    assert trial.user_attrs["stopped_by_time"] is True and trial.user_attrs["epochs_run"] == 1
    assert "epochs = 1\n" in (out / "best.toml").read_text()
    assert "max_seconds = 0.0\n" in (out / "best.toml").read_text()
    log = [json.loads(line) for line in (out / "seed_0" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("stage", "train") == "train"] == [1]

    again = _tune(*args)                     # resumed: the budget stays spent, no fresh one
    assert again.exit_code == 0, again.output
    assert "budget is spent" in again.output
    assert len(optuna.load_study(study_name="bprmf-data", storage=f"sqlite:///{out / 'study.db'}").trials) == 1


def test_seeds_of_settings_no_longer_best_are_set_aside_not_reused(data, tmp_path):
    out = tmp_path / "tune"
    assert _tune("ease", "--data", data, "--trials", 1, "--seeds", "0", "--out", out).exit_code == 0
    recorded = json.loads((out / "seed_0" / "run.json").read_text())
    recorded["config"]["model"]["l2"] = -1.0          # as if an earlier best had other settings
    (out / "seed_0" / "run.json").write_text(json.dumps(recorded))
    result = _tune("ease", "--data", data, "--trials", 1, "--seeds", "0", "--out", out)
    assert result.exit_code == 0, result.output
    assert "trained other settings than the best now; kept as seed_0.superseded1" in result.output
    assert json.loads((out / "seed_0" / "run.json").read_text())["config"]["model"]["l2"] > 0
    assert (out / "seed_0.superseded1" / "results.json").is_file()


def test_the_first_trial_is_the_base_configuration_moved_into_the_space(data, tmp_path):
    config = tmp_path / "base.toml"
    config.write_text("[model]\nname = \"bprmf\"\ndim = 100\n[train]\nlr = 0.0042\nweight_decay = 0.0\nepochs = 1\n")
    out = tmp_path / "tune"
    result = _tune("bprmf", "--data", data, "--config", config, "--trials", 2, "--seeds", "0", "--out", out)
    assert result.exit_code == 0, result.output
    first = optuna.load_study(study_name="bprmf-data", storage=f"sqlite:///{out / 'study.db'}").trials[0]
    space = {p.key: p for p in search_space("bprmf", None)}
    assert first.params["train.lr"] == pytest.approx(0.0042)             # the recipe's own value
    assert first.params["model.dim"] == 128                              # the nearest choice to 100
    assert first.params["train.weight_decay"] == pytest.approx(space["train.weight_decay"].low)


def test_a_base_trial_that_failed_is_queued_again(data, tmp_path):
    # a first run whose base trial failed (as KSR's did on a configuration error since fixed)
    out = tmp_path / "tune"
    args = ("bprmf", "--data", data, "--seeds", "0", "--set", "train.epochs=1", "--set", "model.dim=8",
            "--out", out)
    assert _tune(*args, "--trials", 1).exit_code == 0
    storage = f"sqlite:///{out / 'study.db'}"
    base = optuna.load_study(study_name="bprmf-data", storage=storage).trials[0].params
    # the same study as if its base trial had failed
    optuna.delete_study(study_name="bprmf-data", storage=storage)
    fresh = optuna.create_study(study_name="bprmf-data", storage=storage, direction="maximize")
    fresh.enqueue_trial(base)
    fresh.tell(fresh.ask(), state=optuna.trial.TrialState.FAIL)
    result = _tune(*args, "--trials", 1)
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="bprmf-data", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == pytest.approx(base)                           # the base, queued again


def test_nearest_point_of_a_domain():
    from memrec.tuning.space import Param
    assert Param("model", "k", "int", 5, 50).nearest(3) == 5
    assert Param("model", "k", "int", 5, 50).nearest(17.4) == 17
    assert Param("train", "lr", "float", 1e-4, 1e-2, log=True).nearest(0.5) == 1e-2
    assert Param("model", "act", "categorical", choices=("relu", "tanh")).nearest("gelu") is None
    assert Param("model", "k", "int", 5, 50).nearest(None) is None


def test_a_seed_run_killed_before_its_first_checkpoint_starts_again(data, tmp_path):
    out = tmp_path / "tune"
    assert _tune("bprmf", "--data", data, "--trials", 1, "--seeds", "0", "--set", "train.epochs=1",
                 "--out", out).exit_code == 0
    for name in ("checkpoint.pt", "results.json", "model.pt"):      # as if killed in epoch 1
        (out / "seed_0" / name).unlink()
    result = _tune("bprmf", "--data", data, "--trials", 1, "--seeds", "0", "--set", "train.epochs=1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "seed 0: retraining the best settings" in result.output
    assert (out / "seed_0" / "results.json").is_file()


def test_a_configuration_error_inside_every_trial_is_one_line_without_a_traceback(data, tmp_path):
    # raised in the trial (DEMN's candidate read cannot train with the full softmax), where
    # Optuna logs a failed trial with its traceback on its own handler: run as a user runs it
    result = subprocess.run([sys.executable, "-m", "memrec", "tune", "demn", "--data", str(data), "--trials", "2",
                             "--set", 'train.loss="softmax"', "--set", "model.dim=8", "--out", str(tmp_path / "tune")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "failed with" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "model.read" in line]
    assert len(errors) == 1 and errors[0].startswith("memrec: error:")
