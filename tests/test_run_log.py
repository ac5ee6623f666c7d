"""A run's training record and the progress lines around training (issue 21).

Every run folder gets ``log.jsonl`` (a line per epoch of every stage) and ``curves.png``; a
resumed run continues the log without repeating or losing an epoch; TensorBoard events are an
optional extra. Reading, splitting, negative sampling, pretraining and refit say what they are
doing on stderr, the pretraining epochs under their own label.
"""

import importlib.util
import json
import re
import struct

import pytest
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate, write_csv
from memrec.models import build
from memrec.training.callbacks import Callback, run_folder_callbacks
from memrec.training.config import TrainConfig
from memrec.training.trainer import Trainer, seed_everything

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.csv"
    write_csv(generate(SynthConfig(n_users=80, n_items=300, mean_length=15, seed=2)), path)
    return path


def train(*args):
    return CliRunner().invoke(main, ["train", *[str(a) for a in args]])


def log_records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's header (its first chunk, IHDR)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def bprmf_run(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("runs") / "bprmf"
    result = train("bprmf", "--data", data_file, "--out", out, "--epochs", 3, "--set", "model.dim=8",
                   "--set", "train.lr=0.005", "--no-progress")
    assert result.exit_code == 0, result.output
    return out, result


def test_a_run_logs_one_line_per_epoch_with_loss_lr_seconds_and_validation(bprmf_run):
    out, _ = bprmf_run
    records = log_records(out)
    assert [(r["stage"], r["epoch"]) for r in records] == [("train", 1), ("train", 2), ("train", 3)]
    for r in records:
        assert r["lr"] == 0.005 and r["loss"] > 0 and r["seconds"] > 0
        assert 0 <= r["valid"]["full"]["NDCG@10"] <= 1
    assert records[-1]["loss"] < records[0]["loss"]


def test_a_run_draws_its_curves_as_a_two_panel_png(bprmf_run):
    out, _ = bprmf_run
    assert png_size(out / "curves.png") == (1000, 400)     # 10 × 4 inches at 100 dpi: two panels side by side


def test_a_non_terminal_run_says_each_step_before_training(bprmf_run):
    _, result = bprmf_run
    lines = result.stderr.splitlines()
    expected = ["loading ", "read synth: ", "splitting (loo)…", "loo split: train ",
                "sampling 100 negatives per evaluated user…", "fixed negatives for 80 valid and 80 test users",
                "epoch 1/3"]
    starts = [next((i for i, line in enumerate(lines) if line.startswith(prefix)), None) for prefix in expected]
    assert None not in starts and starts == sorted(starts), result.stderr   # in this order
    assert re.fullmatch(r"read synth: [\d,]+ interactions, 80 users, [\d,]+ items in \d+\.\ds", lines[starts[1]])


def test_resume_drops_epochs_past_the_checkpoint_and_continues_the_log(data_file, tmp_path):
    """A run stopped after epoch 2, whose log got a line for epoch 3 (written before the
    checkpoint that never came) and half of another (the crash mid-write), resumed to 4
    epochs: its log is epochs 1–4, once each, the first two lines as they were."""
    common = ["--data", data_file, "--out", tmp_path / "r", "--set", "model.dim=8", "--no-progress"]
    assert train("bprmf", "--epochs", 2, *common).exit_code == 0
    before = (tmp_path / "r" / "log.jsonl").read_text().splitlines()
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    record["config"]["train"]["epochs"] = 4                            # the budget it was stopped in
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    (tmp_path / "r" / "results.json").unlink()
    stale = {**json.loads(before[-1]), "epoch": 3, "loss": -1.0}
    with open(tmp_path / "r" / "log.jsonl", "a") as log:
        log.write(json.dumps(stale) + "\n" + '{"stage": "train", "epo')
    result = train("bprmf", "--epochs", 4, "--resume", *common)
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 2" in result.stderr
    lines = (tmp_path / "r" / "log.jsonl").read_text().splitlines()
    assert lines[:2] == before
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 for r in records)                         # the stale epoch 3 is gone
    assert png_size(tmp_path / "r" / "curves.png") == (1000, 400)


class Interrupt(Callback):
    """Ctrl-C as epoch ``at`` ends (a KeyboardInterrupt from inside the trainer)."""

    def __init__(self, at: int):
        self.at = at

    def on_epoch_end(self, record: dict) -> None:
        if record["epoch"] == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("logged", [False, True], ids=["before-the-log-line", "after-the-log-line"])
def test_an_interruption_around_the_log_line_neither_repeats_nor_loses_an_epoch(tmp_path, logged):
    """Interrupted at epoch 3's end, before or after its log line was written (never after
    its checkpoint: the log is told first), then resumed to 4 epochs."""
    split = leave_one_out(generate(SynthConfig(n_users=60, n_items=80, mean_length=10, seed=1)))
    config = TrainConfig(epochs=4, batch_size=128, patience=0)

    def fit(callbacks, resume):
        seed_everything(config.seed)
        model = build("bprmf", split.train.n_users, split.train.n_items, {"dim": 8})
        Trainer(config, run_dir=tmp_path, progress=False, echo=lambda line: None,
                callbacks=callbacks).fit(model, split, resume=resume)

    folder = run_folder_callbacks(tmp_path, config)
    with pytest.raises(KeyboardInterrupt):
        fit([*folder, Interrupt(3)] if logged else [Interrupt(3), *folder], resume=False)
    assert [r["epoch"] for r in log_records(tmp_path)] == ([1, 2, 3] if logged else [1, 2])
    fit(None, resume=True)
    assert [r["epoch"] for r in log_records(tmp_path)] == [1, 2, 3, 4]


def test_pretraining_and_refit_are_labelled_and_logged_as_their_own_stages(data_file, tmp_path):
    result = train("cmn", "--data", data_file, "--out", tmp_path / "cmn", "--epochs", 2, "--no-progress",
                   "--set", "model.dim=8", "--set", "train.pretrain_epochs=2", "--set", "train.patience=0",
                   "--set", "train.refit=true")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "pretraining: GMF (BPR) for 2 epochs; CMN's user and item memories start from half its embeddings" in lines
    best = json.loads((tmp_path / "cmn" / "results.json").read_text())["best_epoch"]
    assert f"refit: a fresh model on train + valid for {best} epoch(s)" in lines
    assert [line.split("  ")[0] for line in lines if "  loss " in line] == [
        "pretraining GMF 1/2", "pretraining GMF 2/2", "epoch 1/2", "epoch 2/2",
        "refit: pretraining GMF 1/2", "refit: pretraining GMF 2/2",
        *[f"refit {e}/{best}" for e in range(1, best + 1)]]
    stages = [(r["stage"], r["epoch"]) for r in log_records(tmp_path / "cmn")]
    assert stages == [("pretrain", 1), ("pretrain", 2), ("train", 1), ("train", 2),
                      ("refit_pretrain", 1), ("refit_pretrain", 2),
                      *[("refit", e) for e in range(1, best + 1)]]


def test_resume_keeps_the_pretraining_lines_it_does_not_run_again(data_file, tmp_path):
    common = ["--data", data_file, "--out", tmp_path / "cmn", "--no-progress", "--set", "model.dim=8",
              "--set", "train.pretrain_epochs=2", "--set", "train.patience=0"]
    assert train("cmn", "--epochs", 1, *common).exit_code == 0
    record = json.loads((tmp_path / "cmn" / "run.json").read_text())
    record["config"]["train"]["epochs"] = 2
    (tmp_path / "cmn" / "run.json").write_text(json.dumps(record))
    (tmp_path / "cmn" / "results.json").unlink()
    result = train("cmn", "--epochs", 2, "--resume", *common)
    assert result.exit_code == 0, result.output
    assert "pretraining GMF" not in result.stderr                      # the checkpoint holds its result
    stages = [(r["stage"], r["epoch"]) for r in log_records(tmp_path / "cmn")]
    assert stages == [("pretrain", 1), ("pretrain", 2), ("train", 1), ("train", 2)]


@pytest.mark.skipif(HAS_TENSORBOARD, reason="tensorboard is installed: the missing-package error cannot occur")
def test_tensorboard_without_the_package_is_a_one_line_error_before_any_work(data_file, tmp_path):
    result = train("bprmf", "--data", data_file, "--out", tmp_path / "r", "--tensorboard")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("memrec: error: pip install tensorboard")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="the optional tensorboard package is not installed "
                                                "(pip install tensorboard, or memrec[tensorboard])")
def test_tensorboard_events_hold_each_stage_and_epoch(data_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    result = train("cmn", "--data", data_file, "--out", tmp_path / "r", "--epochs", 3, "--tensorboard",
                   "--set", "model.dim=8", "--set", "train.pretrain_epochs=2", "--set", "train.patience=0",
                   "--no-progress")
    assert result.exit_code == 0, result.output
    expected = {"pretrain": [1, 2], "train": [1, 2, 3]}
    for stage, epochs in expected.items():
        events = EventAccumulator(str(tmp_path / "r" / "tensorboard" / stage))
        events.Reload()
        assert [e.step for e in events.Scalars("loss")] == epochs
        logged = [r["loss"] for r in log_records(tmp_path / "r") if r["stage"] == stage]
        assert [e.value for e in events.Scalars("loss")] == pytest.approx(logged, rel=1e-6)
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard" / "train"))
    events.Reload()
    assert [e.step for e in events.Scalars("valid/full/NDCG@10")] == [1, 2, 3]
