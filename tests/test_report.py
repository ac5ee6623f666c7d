"""``memrec report``: finished runs side by side, from their results.json and log.jsonl."""

import json

import pytest
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.synthetic import SynthConfig, generate, write_csv


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = root / "data.csv"
    write_csv(generate(SynthConfig(n_users=60, n_items=200, mean_length=10, seed=4)), data)
    for name, args in {"a/bprmf": ["bprmf", "--epochs", "3", "--set", "model.dim=8"],
                       "b/bprmf": ["bprmf", "--epochs", "3", "--set", "model.dim=16"],
                       "ease": ["ease"]}.items():
        result = CliRunner().invoke(main, ["train", args[0], "--data", str(data), "--out",
                                           str(root / name), *args[1:]])
        assert result.exit_code == 0, result.output
    return root


def test_the_table_has_a_row_per_run_and_protocol_with_its_metrics(runs):
    result = CliRunner().invoke(main, ["report", str(runs / "a/bprmf"), str(runs / "b/bprmf"), str(runs / "ease")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "| bprmf |" in line or "| ease |" in line]
    assert len(rows) == 6                                          # full + sampled each
    assert rows[-1].startswith("| report")                         # the shortest telling path tail
    results = json.loads((runs / "b/bprmf" / "results.json").read_text())
    full = next(r for r in rows if r.startswith("| b/bprmf") and "| full |" in r)
    assert f"| {results['metrics']['full']['NDCG@10']:.4f} |" in full
    assert "model.dim=16" in full and "train.lr" not in full      # only what differs


def test_out_writes_markdown_and_the_curves(runs, tmp_path):
    out = tmp_path / "cmp.md"
    result = CliRunner().invoke(main, ["report", str(runs / "a/bprmf"), str(runs / "ease"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "![training curves](cmp_curves.png)" in out.read_text()
    assert (tmp_path / "cmp_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("make, phrase", [
    (lambda p: p.mkdir(), "not a finished run (no results.json)"),
    (lambda p: (p.mkdir(), (p / "results.json").write_text("{")), "unreadable run record"),
])
def test_a_folder_that_is_not_a_finished_run_is_named(tmp_path, make, phrase):
    folder = tmp_path / "r"
    make(folder)
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 2 and phrase in result.output and str(folder) in result.output
