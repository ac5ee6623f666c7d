"""Splits (memrec.data.splits) and sampled negatives (memrec.data.negatives).

Tables carry their row number in the ``rating`` column, so every assertion names the exact rows
that land in each part.
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.data.interactions import IdMap, Interactions
from memrec.errors import DataError
from memrec.data.negatives import _exact_draw
from memrec.data.splits import (Split, leave_one_out, make_split, random_ratio, sample_negatives,
                                session_split, temporal)


def table(users, items, timestamp=None, session=None) -> Interactions:
    return Interactions.from_raw(users, items, timestamp=timestamp, session=session,
                                 rating=np.arange(len(users)))


def rows(part) -> list[int]:
    return None if part is None else part.rating.astype(int).tolist()


def assert_partition(split, n):
    parts = [p for p in (split.train, split.valid, split.test) if p is not None]
    ids = np.concatenate([p.rating for p in parts]).astype(int)
    assert sorted(ids.tolist()) == list(range(n))    # every row in exactly one part


# -- leave one out ----------------------------------------------------------------------------

def loo_table() -> Interactions:
    return table(
        ["a", "a", "a", "b", "b", "c", "c", "c", "c", "d", "d", "d"],
        ["i1", "i2", "i3", "i1", "i2", "i3", "i4", "i5", "i1", "i2", "i3", "i4"],
        timestamp=[3, 1, 2, 5, 5, 1, 1, 9, 0, 4, 4, 4])


def test_leave_one_out_exact_rows():
    # a: by time rows 1, 2, 0.  b: 2 rows -> all train.  c: rows 8 (t0), 5 and 6 (both t1: file
    # order keeps 5 before 6), 7 (t9).  d: three ties -> file order 9, 10, 11.
    split = leave_one_out(loo_table())
    assert split.kind == "loo"
    assert rows(split.train) == [1, 3, 4, 5, 8, 9]
    assert rows(split.valid) == [2, 6, 10]
    assert rows(split.test) == [0, 7, 11]
    assert_partition(split, 12)


def test_leave_one_out_without_valid():
    # b has 2 rows: enough without a valid part; its tie (both t5) resolves to file order.
    split = leave_one_out(loo_table(), valid=False)
    assert split.valid is None
    assert rows(split.test) == [0, 4, 7, 11]
    assert rows(split.train) == [1, 2, 3, 5, 6, 8, 9, 10]


def test_leave_one_out_without_timestamps_uses_file_order():
    split = leave_one_out(table(["x", "y", "x", "x", "x"], [5, 8, 6, 7, 9]))
    assert rows(split.train) == [0, 1, 2]          # y has a single row: train only
    assert rows(split.valid) == [3]
    assert rows(split.test) == [4]


def test_leave_one_out_empty_is_an_error():
    with pytest.raises(DataError, match="empty"):
        leave_one_out(loo_table().take(np.zeros(12, bool)))


# -- temporal ---------------------------------------------------------------------------------

def temporal_table() -> Interactions:
    # time order of rows: 0 1 2 3 4 5 7 6 8 9 (rows 8 and 9 tie at t=9).
    # u4 appears only in row 8, item D only in row 9.
    return table(["u1", "u2", "u1", "u3", "u2", "u1", "u2", "u3", "u4", "u1"],
                 ["A", "B", "B", "C", "A", "C", "C", "A", "A", "D"],
                 timestamp=[1, 2, 3, 4, 5, 6, 8, 7, 9, 9])


def test_temporal_exact_rows_and_cold_start_drop():
    split = temporal(temporal_table(), test_frac=0.3, valid_frac=0.2)
    assert split.kind == "temporal"
    assert rows(split.train) == [0, 1, 2, 3, 4]
    assert rows(split.valid) == [5, 7]
    assert rows(split.test) == [6]                 # 8 (cold user) and 9 (cold item) dropped
    assert split.test.meta["cold_dropped"] == 2
    assert split.valid.meta["cold_dropped"] == 0


def test_temporal_keeps_cold_rows_when_asked():
    split = temporal(temporal_table(), test_frac=0.3, valid_frac=0.2, drop_cold=False)
    assert rows(split.test) == [6, 8, 9]
    assert_partition(split, 10)


def test_temporal_cut_is_stable_on_ties():
    # rows 8 and 9 share t=9: the later file row is the later event.
    split = temporal(temporal_table(), test_frac=0.1, valid_frac=0.1, drop_cold=False)
    assert rows(split.test) == [9]
    assert rows(split.valid) == [8]


def test_temporal_without_valid():
    split = temporal(temporal_table(), test_frac=0.3, valid_frac=0.0)
    assert split.valid is None
    assert rows(split.train) == [0, 1, 2, 3, 4, 5, 7]


def test_temporal_needs_timestamps():
    with pytest.raises(DataError, match="needs timestamps.*'loo'.*'random'"):
        temporal(table([1, 2], [1, 2]))


def test_temporal_empty_test_after_cold_drop_is_an_error():
    with pytest.raises(DataError, match="test part is empty after dropping"):
        temporal(temporal_table(), test_frac=0.2, valid_frac=0.0)


# -- random -----------------------------------------------------------------------------------

def random_table(n_users=400, seed=1) -> Interactions:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 40, size=n_users)
    users = np.repeat(np.arange(n_users), counts)
    rng.shuffle(users)                                         # users interleaved in file order
    return table(users, rng.integers(0, 1000, size=len(users)))


def test_random_ratio_counts_per_user():
    data = random_table()
    split = random_ratio(data, test_frac=0.2, valid_frac=0.1, seed=3)
    assert split.kind == "random"
    assert_partition(split, len(data))
    n = np.bincount(data.user, minlength=data.n_users)
    n_train = np.bincount(split.train.user, minlength=data.n_users)
    n_valid = np.bincount(split.valid.user, minlength=data.n_users)
    n_test = np.bincount(split.test.user, minlength=data.n_users)
    big = n >= 3
    assert (n_train[~big] == n[~big]).all()                     # small users: train only
    assert (n_train[big] >= 1).all()
    assert (n_test[big] == np.maximum(np.floor(0.2 * n[big] + 0.5), 1)).all()
    assert (n_valid[big] == np.maximum(np.floor(0.1 * n[big] + 0.5), 1)).all()
    assert n_test.sum() / n[big].sum() == pytest.approx(0.2, abs=0.03)
    # hand check: 3 rows -> 1 / 1 / 1; 10 rows -> 7 / 1 / 2
    assert (n_train[n == 3] == 1).all() and (n_test[n == 10] == 2).all()


def test_random_ratio_caps_holdout_to_keep_train():
    data = table(["u"] * 3, [1, 2, 3])
    split = random_ratio(data, test_frac=0.6, valid_frac=0.3)
    assert (len(split.train), len(split.valid), len(split.test)) == (1, 1, 1)


def test_random_ratio_without_valid_evaluates_two_row_users():
    split = random_ratio(table(["u", "u", "v"], [1, 2, 3]), test_frac=0.2, valid_frac=0.0)
    assert split.valid is None
    assert len(split.test) == 1 and split.test.users.raw[split.test.user[0]] == "u"
    assert 2 in rows(split.train)


def test_random_ratio_is_seeded():
    data = random_table(100)
    a, b = random_ratio(data, seed=7), random_ratio(data, seed=7)
    c = random_ratio(data, seed=8)
    assert rows(a.test) == rows(b.test) and rows(a.valid) == rows(b.valid)
    assert rows(a.test) != rows(c.test)


# -- session ----------------------------------------------------------------------------------

def session_table() -> Interactions:
    # S1 (id 5, u1): A B C D, ends t=3          S2 (id 1, u2): C D, ends t=5
    # S3 (id 9, u1): B X C A, ends t=23 (X never in train)
    # S5 (id 2, u2): D A B, D and A tie at t=25 (file order), ends t=26
    # S4 (id 3, u3): Y D, ends t=31 -> only D is known -> too short, dropped
    spec = [  # (session, user, item, time), in file order: sessions interleaved
        (5, "u1", "A", 0), (5, "u1", "B", 1), (1, "u2", "C", 4), (5, "u1", "C", 2),
        (5, "u1", "D", 3), (1, "u2", "D", 5), (2, "u2", "D", 25), (9, "u1", "B", 20),
        (2, "u2", "A", 25), (9, "u1", "X", 21), (3, "u3", "Y", 30), (9, "u1", "C", 22),
        (2, "u2", "B", 26), (9, "u1", "A", 23), (3, "u3", "D", 31),
    ]
    s, u, i, t = zip(*spec)
    return table(list(u), list(i), timestamp=list(t), session=list(s))


def decode(cases, data):
    items = data.items.raw
    hist = [items[cases.items[a:b]].tolist() for a, b in zip(cases.indptr[:-1], cases.indptr[1:])]
    return hist, items[cases.targets].tolist(), data.users.raw[cases.users].tolist()


def test_session_split_cases_by_hand():
    data = session_table()
    split = session_split(data, test_frac=0.6)                 # 3 of 5 sessions: S3, S5, S4
    assert split.kind == "session" and split.valid is None
    assert rows(split.train) == [0, 1, 2, 3, 4, 5]
    hist, targets, users = decode(split.test_cases, data)
    assert hist == [["B"], ["B", "C"], ["D"], ["D", "A"]]
    assert targets == ["C", "A", "A", "B"]
    assert users == ["u1", "u1", "u2", "u2"]
    assert split.test_cases.indptr.tolist() == [0, 1, 3, 4, 6]
    assert split.test_cases.times.tolist() == [20, 20, 22, 25, 25, 25]   # the histories' times (X's gone)
    assert rows(split.test) == [6, 7, 8, 11, 12, 13]          # X and all of S4 removed


def test_session_cases_keep_their_times_through_a_saved_split(tmp_path):
    from memrec.data.split_io import load_split, save_split
    data = session_table()
    split = session_split(data, test_frac=0.6)
    save_split(tmp_path / "split.npz", split)
    loaded = load_split(tmp_path / "split.npz", data.users, data.items)
    np.testing.assert_array_equal(loaded.test_cases.times, split.test_cases.times)
    untimed = table(["a", "a", "b", "b"], ["x", "y", "x", "y"], session=[1, 1, 2, 2])
    assert session_split(untimed, test_frac=0.5).test_cases.times is None


def test_session_split_valid_sessions():
    data = session_table()
    split = session_split(data, test_frac=0.6, valid_frac=0.2)  # valid: S2 (just before S3)
    assert rows(split.train) == [0, 1, 3, 4]
    assert rows(split.valid) == [2, 5]
    hist, targets, _ = decode(split.valid_cases, data)
    assert hist == [["C"]] and targets == ["D"]
    assert len(split.test_cases) == 4


def test_session_split_by_days():
    day = 86400.0
    data = table(["u"] * 8, [1, 2, 1, 2, 1, 2, 2, 1], session=[1, 1, 2, 2, 3, 3, 4, 4],
                 timestamp=np.array([0, 0.5, 1, 1.2, 4, 5, 5.5, 6]) * day)
    split = session_split(data, test_days=1.5)                  # sessions ending after day 4.5
    assert sorted(set(split.test.session.tolist())) == [3, 4]
    split = session_split(data, test_days=1.5, valid_days=4)    # valid: ending in (0.5, 4.5]
    assert sorted(set(split.valid.session.tolist())) == [2]
    assert sorted(set(split.train.session.tolist())) == [1]


def test_session_split_needs_sessions():
    with pytest.raises(DataError, match="needs a session column"):
        session_split(table([1, 2], [1, 2], timestamp=[1, 2]))


# -- sampled negatives ------------------------------------------------------------------------

@st.composite
def small_datasets(draw):
    n_items = draw(st.integers(4, 30))
    n_rows = draw(st.integers(3, 80))
    users = draw(st.lists(st.integers(0, 6), min_size=n_rows, max_size=n_rows))
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=n_rows, max_size=n_rows))
    data = Interactions(np.array(users, np.int32), np.array(items, np.int32),
                        IdMap.range(7), IdMap.range(n_items))
    return data, draw(st.integers(0, 2 ** 16))


@settings(max_examples=60, deadline=None)
@given(small_datasets())
def test_negatives_never_hit_the_users_items(case):
    data, seed = case
    split = leave_one_out(data, valid=True)
    own = [set() for _ in range(data.n_users)]
    for u, i in zip(data.user.tolist(), data.item.tolist()):
        own[u].add(i)
    free = min(data.n_items - len(own[u]) for u in set(data.user.tolist()))
    if free == 0:
        return
    n = 1 + seed % free
    out = sample_negatives(split, n, seed=seed)
    for part, cands in ((split.valid, out.valid_negatives), (split.test, out.test_negatives)):
        assert cands.users.tolist() == sorted(set(part.user.tolist()))
        assert cands.negatives.shape == (len(cands.users), n)
        for u, row in zip(cands.users.tolist(), cands.negatives.tolist()):
            assert len(set(row)) == n                      # no repeats
            assert not own[u] & set(row)                   # never one of the user's items
            assert all(0 <= i < data.n_items for i in row)


def negatives_table(n_users=2000):
    # every user has items 0..4 of 10 (so exactly 5 are free)
    users = np.repeat(np.arange(n_users), 5)
    return leave_one_out(table(users, np.tile(np.arange(5), n_users)), valid=False)


def test_negatives_are_uniform_over_free_items():
    split = sample_negatives(_with_items(negatives_table(), 10), 2, seed=0)
    counts = np.bincount(split.test_negatives.negatives.ravel(), minlength=10)
    assert (counts[:5] == 0).all()
    assert counts[5:] == pytest.approx([2000 * 2 / 5] * 5, rel=0.1)


def test_exact_draw_is_uniform_and_excludes_seen():
    n_items, users = 10, np.arange(3000, dtype=np.int64)
    seen = np.sort((users[:, None] * n_items + np.array([0, 3, 7])).ravel())
    lo, hi = users * 3, users * 3 + 3
    out = _exact_draw(users, lo, hi, seen, n_items, 6, np.random.default_rng(0))
    assert out.shape == (3000, 6)
    assert all(len(set(r)) == 6 for r in out.tolist())
    counts = np.bincount(out.ravel(), minlength=n_items)
    assert (counts[[0, 3, 7]] == 0).all()
    assert counts[[1, 2, 4, 5, 6, 8, 9]] == pytest.approx([3000 * 6 / 7] * 7, rel=0.05)


def test_negatives_are_seeded_and_per_part():
    split = random_ratio(random_table(200), seed=0)
    a, b = sample_negatives(split, 50, seed=1), sample_negatives(split, 50, seed=1)
    c = sample_negatives(split, 50, seed=2)
    assert np.array_equal(a.test_negatives.negatives, b.test_negatives.negatives)
    assert np.array_equal(a.valid_negatives.negatives, b.valid_negatives.negatives)
    assert not np.array_equal(a.test_negatives.negatives, c.test_negatives.negatives)
    only_test = sample_negatives(split, 50, seed=1, parts=("test",))
    assert only_test.valid_negatives is None
    assert np.array_equal(only_test.test_negatives.negatives, a.test_negatives.negatives)
    assert split.test_negatives is None                      # the input split is untouched


def test_negatives_error_when_too_few_items():
    split = leave_one_out(table(["u", "u", "u", "v", "v", "v"], [1, 2, 3, 1, 2, 4]))
    with pytest.raises(DataError, match="cannot sample 2 negatives for user 'u': only 1 of 4"):
        sample_negatives(split, 2)


def _with_items(split, n_items):
    """The same split over a larger item map (items that nobody interacted with)."""
    items = IdMap.range(n_items)
    fix = lambda p: None if p is None else replace(p, items=items)  # noqa: E731
    return replace(split, train=fix(split.train), valid=fix(split.valid), test=fix(split.test))


# -- make_split -------------------------------------------------------------------------------

def test_make_split_dispatches_and_samples():
    split = make_split(random_table(100), "random", seed=4, n_negatives=20, test_frac=0.3)
    assert split.kind == "random"
    assert rows(split.test) == rows(random_ratio(random_table(100), seed=4, test_frac=0.3).test)
    assert split.test_negatives.negatives.shape[1] == 20
    assert make_split(loo_table(), "loo", n_negatives=0).test_negatives is None
    assert make_split(session_table(), "session", test_frac=0.6).test_negatives is None


def test_make_split_errors():
    with pytest.raises(DataError, match="unknown split 'kfold'; choose one of: loo, temporal, "
                                        "random, session"):
        make_split(loo_table(), "kfold")
    with pytest.raises(DataError, match="'given' splits come from the readers"):
        make_split(loo_table(), "given")
    with pytest.raises(DataError, match="unknown option.*'loo' split: test_frac; allowed: valid"):
        make_split(loo_table(), "loo", test_frac=0.2)


@pytest.mark.parametrize("fracs", [(0.0, 0.1), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1)])
def test_bad_fractions_are_errors(fracs):
    test_frac, valid_frac = fracs
    for split in (random_ratio, temporal):
        with pytest.raises(DataError, match="split fractions need"):
            split(loo_table(), test_frac=test_frac, valid_frac=valid_frac)


def test_negatives_complete_short_rows_exactly():
    # users 0..49 have 2 items of 200; user 50 has all but items 196..199, far denser than the
    # rest, so its oversampled row comes up short and is completed by the exact fallback.
    n_items = 200
    train_u = np.concatenate([np.arange(50), np.full(195, 50)])
    train_i = np.concatenate([np.zeros(50, int), np.arange(195)])
    test_u, test_i = np.arange(51), np.concatenate([np.ones(50, int), [195]])
    data = Interactions(np.concatenate([train_u, test_u]).astype(np.int32),
                        np.concatenate([train_i, test_i]).astype(np.int32),
                        IdMap.range(51), IdMap.range(n_items))
    split = Split("loo", train=data.take(np.arange(245)), test=data.take(np.arange(245, 296)))
    out = sample_negatives(split, 4, seed=3).test_negatives
    assert sorted(out.negatives[50].tolist()) == [196, 197, 198, 199]
    assert all(not {0, 1} & set(row) and len(set(row)) == 4 for row in out.negatives[:50].tolist())


def test_carve_validation_moves_one_random_train_row_per_user():
    from memrec.data.interactions import IdMap
    from memrec.data.splits import Candidates, carve_validation
    train = Interactions(np.array([0, 0, 0, 1, 2, 2], np.int32), np.array([0, 1, 2, 3, 4, 5], np.int32),
                         IdMap.range(3), IdMap.range(120))
    test = Interactions(np.array([0, 1, 2], np.int32), np.array([6, 7, 8], np.int32),
                        IdMap.range(3), IdMap.range(120))
    given = Split("given", train, test, test_negatives=Candidates(np.arange(3), np.zeros((3, 2), np.int64)))
    carved = carve_validation(given, seed=1, n_negatives=10)
    assert sorted(carved.valid.user.tolist()) == [0, 2]          # user 1 has a single train row
    assert len(carved.train) == 4 and carved.test is test
    moved = set(zip(carved.valid.user.tolist(), carved.valid.item.tolist()))
    kept = set(zip(carved.train.user.tolist(), carved.train.item.tolist()))
    assert not moved & kept and moved | kept == set(zip(train.user.tolist(), train.item.tolist()))
    assert carved.valid_negatives.negatives.shape == (2, 10)
    again = carve_validation(given, seed=1, n_negatives=10)
    assert again.valid.item.tolist() == carved.valid.item.tolist()
    picks = {tuple(carve_validation(given, seed=s, n_negatives=0).valid.item.tolist()) for s in range(20)}
    assert len(picks) > 1                                          # the choice is random
