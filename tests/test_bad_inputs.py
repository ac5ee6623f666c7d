"""The bad-input corpus: each row is an input a new user might give, the exit status it must
get, and a phrase its one-line error must contain (no traceback, nothing written)."""

import pytest
from click.testing import CliRunner

from memrec.cli import main

GOOD = "user,item,rating,timestamp\n1,2,3,1600000000\n1,3,4,1600000100\n2,2,5,1600000200\n"

#: (id, file content — text, bytes, {file name: text} for a folder — or None, command with
#: {data} / {tmp}, exit status, phrase)
CORPUS = [
    ("inf-rating", "user,item,rating,timestamp\n1,2,inf,5\n", ["data", "info", "{data}"], 2,
     "line 2: rating 'inf' is not a finite number"),
    ("negative-timestamp", "user,item,rating,timestamp\n1,2,3,-5\n", ["data", "info", "{data}"], 2,
     "line 2: timestamp '-5' is negative"),
    ("huge-timestamp", "user,item,rating,timestamp\n1,2,3," + "9" * 5000 + "\n", ["data", "info", "{data}"],
     2, "(5,000 characters) is not a finite number"),
    ("header-without-user-item", "alpha,beta,gamma\n1,2,3\n4,5,6\n", ["data", "info", "{data}"], 2,
     "the header (alpha, beta, gamma) has no item and user"),
    ("negative-dim", GOOD, ["train", "bprmf", "--data", "{data}", "--out", "{tmp}/r", "--set", "model.dim=-5"],
     2, "model.dim must be a non-negative finite number, got -5"),
    ("nan-lr", GOOD, ["train", "bprmf", "--data", "{data}", "--out", "{tmp}/r", "--set", "train.lr=nan"],
     2, "train.lr must be a finite number, got nan"),
    ("zero-epochs", GOOD, ["train", "bprmf", "--data", "{data}", "--out", "{tmp}/r", "--epochs", "0"],
     2, "train.epochs must be positive, got 0"),
    ("stream-out-in-missing-folder", GOOD,
     ["stream", "bprmf", "--data", "{data}", "--out", "{tmp}/missing/out.json"], 2,
     "folder {tmp}/missing does not exist"),
    ("fetch-dest-is-a-file", GOOD, ["data", "fetch", "ml-100k", "--dest", "{data}"], 2, "is a file"),
    ("fetch-unknown-dataset", None, ["data", "fetch", "nope", "--dest", "{tmp}"], 2, "unknown dataset 'nope'; known: "),
    ("resume-nothing", None, ["train", "bprmf", "--data", "x", "--out", "{tmp}", "--resume"], 2,
     "nothing to resume"),
    ("unknown-model-described", None, ["models", "nope"], 2, "unknown model 'nope'"),
    ("na-user-ids", "userId,itemId\nNA,1\nNA,2\n3,2\n", ["data", "info", "{data}"], 2,
     "line 2: missing user id ('NA')"),
    ("empty-file", "", ["data", "info", "{data}"], 2, "the file is empty"),
    ("utf-16", "user,item\n1,2\n".encode("utf-16"), ["data", "info", "{data}"], 2,
     "the text is UTF-16 (little-endian); save it as UTF-8"),
    # click's own usage errors, one line each (click prints usage, a hint and the error: three)
    ("epochs-not-a-number", GOOD, ["train", "bprmf", "--data", "{data}", "--out", "{tmp}/r", "--epochs", "abc"],
     2, "Invalid value for '--epochs': 'abc' is not a valid integer. (see: memrec train --help)"),
    ("unknown-verb", None, ["trian"], 2, "No such command 'trian'. Did you mean 'train'?"),
    ("unknown-group-option", None, ["--bogus"], 2, "No such option '--bogus'. (see: memrec --help)"),
    ("missing-argument", None, ["data", "info"], 2, "Missing argument 'PATH'. (see: memrec data info --help)"),
    ("port-out-of-range", None, ["serve", "{tmp}", "--port", "99999"], 2, "99999 is not in the range"),
    # a 0/1 third field nobody named: sampled negatives would silently become interactions
    ("unnamed-0-1-column", "1,2,1\n1,3,0\n2,2,1\n2,4,0\n", ["data", "info", "{data}"], 2,
     "field 3 holds only 0 and 1 and no header names it: a label with sampled negatives, or a rating? "
     "Add a header line, user,item,label"),
    ("label-not-0-or-1", "user,item,label\n1,2,1\n1,3,2\n", ["data", "info", "{data}"], 2,
     "line 3: label '2' is not 0 or 1"),
    ("labels-all-zero", "user,item,label\n1,2,0\n1,3,0\n", ["data", "info", "{data}"], 2,
     "every label is 0: sampled negatives only"),
    ("ripplenet-label-3", {"ratings_final.txt": "0\t1\t1\n0\t2\t3\n", "kg_final.txt": "1\t0\t5\n"},
     ["data", "info", "{data}"], 2, "ratings_final.txt line 2: label '3' is not 0 or 1"),
    ("ripplenet-short-line", {"ratings_final.txt": "0\t1\t1\n0\t2\n"}, ["data", "info", "{data}"], 2,
     "ratings_final.txt line 2: expected 3 fields, found 2"),
    ("ksr-without-kg", GOOD, ["train", "ksr", "--data", "{data}", "--out", "{tmp}/r", "--set", "data.n_negatives=0"],
     2, "KSR needs a knowledge graph and this dataset has none"),
    ("ksr-entity-only-kg", {"f.inter": "user_id:token\titem_id:token\n1\t10\n1\t11\n2\t10\n2\t11\n",
                            "f.kg": "head_id:token\trelation_id:token\ttail_id:token\nd1\tborn_in\tc1\nc1\tin\tn1\n",
                            "f.link": "item_id:token\tentity_id:token\n10\tm10\n11\tm11\n"},
     ["train", "ksr", "--data", "{data}", "--out", "{tmp}/r", "--set", "data.n_negatives=0"], 2,
     "the knowledge graph gives KSR no memory slot: no item is linked to one of its entities"),
]


@pytest.mark.parametrize("content, command, status, phrase",
                         [row[1:] for row in CORPUS], ids=[row[0] for row in CORPUS])
def test_bad_input_gets_its_one_line_error(tmp_path, content, command, status, phrase):
    data = tmp_path / "data.csv"
    if isinstance(content, dict):             # a dataset folder: file name -> text
        data = tmp_path / "data"
        data.mkdir()
        for name, text in content.items():
            (data / name).write_text(text)
    elif isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text(content)
    args = [a.format(data=data, tmp=tmp_path) for a in command]
    result = CliRunner().invoke(main, args, prog_name="memrec")
    assert result.exit_code == status, result.output
    assert phrase.format(tmp=tmp_path) in result.output
    assert "Traceback" not in result.output
    # one error line, the last; progress lines of the steps that ran before it may precede it
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("memrec: error:")]
    assert errors == [lines[-1]], result.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "missing").exists()


def test_repeated_pairs_are_counted_and_the_policy_named(tmp_path):
    data = tmp_path / "dup.csv"
    data.write_text("user,item\n" + "1,2\n1,2\n1,3\n1,3\n2,2\n2,2\n")
    out = CliRunner().invoke(main, ["data", "info", str(data)]).output
    assert "density       0.750000" in out          # 3 distinct pairs of 2 x 2 (never above 1)
    assert "3 interactions repeat a user-item pair" in out and "(default: keep)" in out


def test_a_saved_model_folder_says_what_evaluate_needs(tmp_path):
    from memrec.recommender import Recommender
    from memrec.data.synthetic import SynthConfig, generate
    Recommender("pop").fit(generate(SynthConfig(n_users=20, n_items=30, seed=3))).save(tmp_path / "m")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "m")])
    assert result.exit_code == 2 and "no split.npz (Recommender.save keeps the model only)" in result.output


def test_training_notes_repeated_pairs_it_keeps(tmp_path):
    data = tmp_path / "d.csv"
    rows = [f"{u},{(u + 3 * k) % 60},{1600000000 + 10 * k}" for u in range(30) for k in range(12)]
    data.write_text("user,item,timestamp\n" + "\n".join(rows + rows[:5]) + "\n")
    result = CliRunner().invoke(main, ["train", "pop", "--data", str(data), "--out", str(tmp_path / "r"),
                                       "--set", "data.n_negatives=5"])
    assert result.exit_code == 0, result.output
    assert "note: 5 interactions repeat a user-item pair and are kept" in result.stderr
