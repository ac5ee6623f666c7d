"""Repeat share: held-out targets already in the user's or session's history, per split, and
``memrec data info`` reporting it."""

import numpy as np
from click.testing import CliRunner

from memrec.cli import main
from memrec.data.interactions import Interactions
from memrec.data.repeats import case_repeats, heldout_repeats, repeat_shares
from memrec.data.splits import NextItemCases, leave_one_out, session_split

from .conftest import shared_path


def test_case_repeats_hand_computed():
    # histories (1, 2) → 1, (3) → 4, (5, 5) → 5, (2, 6, 7) → 6
    cases = NextItemCases(indptr=np.array([0, 2, 3, 5, 8]), items=np.array([1, 2, 3, 5, 5, 2, 6, 7]),
                          targets=np.array([1, 4, 5, 6]), users=np.full(4, -1))
    assert case_repeats(cases).tolist() == [True, False, True, True]


def test_heldout_repeats_look_in_every_known_part():
    data = Interactions.from_raw(user=[0, 0, 1], item=[10, 11, 10])     # item 10 → 0, 11 → 1
    train, valid = data.take(np.array([0, 1])), data.take(np.array([2]))  # valid: (user 1, item 10)
    heldout = Interactions(np.array([0, 1, 1], np.int32), np.array([1, 1, 0], np.int32), data.users, data.items)
    # (0, 11) in train; (1, 11) nowhere; (1, 10) only in valid
    assert heldout_repeats([train], heldout).tolist() == [True, False, False]
    assert heldout_repeats([train, valid], heldout).tolist() == [True, False, True]


def test_repeat_shares_of_a_session_split_and_of_a_leave_one_out_split():
    # training session 2 (1 2 3) ends first; held out: session 0, 1 2 1 (its cases: 1 → 2 new,
    # 1 2 → 1 repeat) and session 1, 3 3 (3 → 3 repeat)
    data = Interactions.from_raw(user=[0, 0, 0, 1, 1, 2, 2, 2], item=[1, 2, 1, 3, 3, 1, 2, 3],
                                 timestamp=[1, 2, 3, 4, 5, 0, 0.3, 0.5], session=[0, 0, 0, 1, 1, 2, 2, 2])
    shares = repeat_shares(session_split(data, test_frac=0.67))
    assert (shares["test"].repeats, shares["test"].total) == (2, 3)
    # user 0's last click (item 1) repeats an earlier one; user 1's (3) too; user 2's (3) does not
    loo = repeat_shares(leave_one_out(data, valid=False))
    assert loo["test"].repeats == 2 and loo["test"].total == 3


def test_data_info_reports_the_repeat_share_of_every_split(tmp_path):
    path = tmp_path / "clicks.csv"
    rows = ["user,item,timestamp,session"] + [f"{u},{i},{t},{u}" for t, (u, i) in enumerate(
        [(u, (u + k) % 7 if k != 3 else u % 7) for u in range(30) for k in range(5)])]
    path.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["data", "info", str(path)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert set(lines) == {"loo", "temporal", "random", "session"}
    # every session clicks u, u+1, u+2, u (again), u+4: the 4th click repeats, the 5th does not
    assert "test 0.0% of 30" in lines["loo"] and "valid 100.0% of 30" in lines["loo"]


def test_data_info_on_yoochoose_reports_the_issues_repeat_share():
    result = CliRunner().invoke(main, ["data", "info", str(shared_path("yoochoose1_64"))])
    assert result.exit_code == 0, result.output
    assert "  given       test 26.6% of 55,898" in result.output.splitlines()
