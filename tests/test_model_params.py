"""Model hyper-parameters are checked against their constructor annotations, from Python, a
config file and ``--set``; None is set with ``none`` (TOML has no null).

Regression tests for "parameter type checks with holes": ``Recommender("stamp",
max_history=None)`` stored the string "None", and ``--set model.max_history=abc`` ended in a
traceback inside the constructor.
"""

import json

import pytest
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.errors import ConfigError
from memrec.models import build, check_params
from memrec.recommender import Recommender
from memrec.training.config import load_config


def test_regression_none_hyperparameter_stays_none_from_python():
    assert Recommender("stamp", max_history=None).config.model_params == {"max_history": None}
    assert build("stamp", 3, 5, {"max_history": None}).max_history is None


def test_regression_none_hyperparameter_from_set_and_config_file(tmp_path):
    for text in ("none", "None", "NONE"):
        assert load_config("stamp", overrides=[f"model.max_history={text}"]).model_params == {"max_history": None}
    path = tmp_path / "c.toml"
    path.write_text('[model]\nname = "stamp"\nmax_history = "none"\n')
    assert load_config(None, path).model_params == {"max_history": None}


@pytest.mark.parametrize("name, params, message", [
    ("stamp", {"max_history": "abc"}, "model.max_history must be an integer or none, got 'abc'"),
    ("stamp", {"max_history": "None"}, None),                       # the old "None" string: now None
    ("stamp", {"max_history": True}, "model.max_history must be an integer or none, got True"),
    ("stamp", {"max_history": 2.5}, "model.max_history must be an integer or none, got 2.5"),
    ("stamp", {"dim": None}, "model.dim must be an integer, got none"),
    ("stamp", {"attention": 1}, "model.attention must be true or false, got 1"),
    ("stamp", {"max_norm": "big"}, "model.max_norm must be a number, got 'big'"),
    ("ksr", {"variant": None}, "model.variant must be a string, got none"),
    ("ksr", {"transe": 3}, "model.transe must be a string, got 3"),
])
def test_regression_every_hyperparameter_is_checked_against_its_annotation(name, params, message):
    if message is None:
        assert check_params(name, dict(params)) == {k: None for k in params}
        return
    with pytest.raises(ConfigError) as error:
        check_params(name, dict(params))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="model\\."):          # the same through the façade
        Recommender(name, **params)


def test_integral_floats_and_ints_are_converted_to_the_annotated_type():
    assert check_params("stamp", {"max_history": 5.0, "dim": 8.0, "max_norm": 2}) == \
        {"max_history": 5, "dim": 8, "max_norm": 2.0}
    out = check_params("stamp", {"max_history": 5.0})
    assert type(out["max_history"]) is int


def test_none_is_rejected_outside_model_parameters_that_accept_it():
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config("stamp", overrides=["train.epochs=none"])
    # a quoted "none" is a string, for a parameter that is a string
    assert load_config("ksr", overrides=['model.transe="none"']).model_params == {"transe": "none"}


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.csv"
    write_csv(generate(SynthConfig(n_users=40, n_items=200, mean_length=10, seed=2)), path)
    return path


@pytest.mark.parametrize("value, message", [
    ("abc", "model.max_history must be an integer or none, got 'abc'"),
    ("2.5", "model.max_history must be an integer or none, got 2.5"),
    ("true", "model.max_history must be an integer or none, got True"),
])
def test_regression_set_bad_optional_int_is_one_line_cli_error(value, message, data_file, tmp_path):
    result = CliRunner().invoke(main, ["train", "stamp", "--data", str(data_file), "--out",
                                       str(tmp_path / "r"), "--set", f"model.max_history={value}"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memrec: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "r").exists()


def test_regression_set_none_from_the_cli_trains_with_none(data_file, tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["train", "stamp", "--data", str(data_file), "--out", str(out),
                                       "--epochs", "1", "--set", "model.dim=8",
                                       "--set", "model.max_history=none", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["params"] == {"dim": 8, "max_history": None}
    assert Recommender.load(out).model_.max_history is None
