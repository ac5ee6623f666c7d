"""Preprocessing: binarize, deduplicate, k-core, compact, and their composition.

Rows are identified by a row-number column (stored in ``timestamp`` or ``rating`` where free) so
each assertion names exact surviving rows.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.data.interactions import Interactions
from memrec.errors import DataError
from memrec.data.preprocess import binarize, compact, deduplicate, k_core, preprocess
from memrec.data.sorting import stable_argsort


def pairs(data: Interactions) -> list[tuple]:
    return list(zip(data.users.raw[data.user].tolist(), data.items.raw[data.item].tolist()))


# -- binarize ---------------------------------------------------------------------------------

def test_binarize_keeps_ratings_at_or_above_threshold():
    data = Interactions.from_raw(["u1", "u1", "u2", "u2", "u3"], ["A", "B", "A", "C", "B"],
                                 rating=[1, 3, 4, 5, 3.5])
    out = binarize(data, 3.5)
    assert pairs(out) == [("u2", "A"), ("u2", "C"), ("u3", "B")]
    assert out.rating.tolist() == [4, 5, 3.5]
    assert out.n_items == 3                     # id maps untouched by binarize


def test_binarize_without_ratings_is_an_error():
    data = Interactions.from_raw([1, 2], [1, 2])
    with pytest.raises(DataError, match="no rating column"):
        binarize(data, 4)


def test_binarize_that_removes_everything_says_so():
    data = Interactions.from_raw([1, 2], [1, 2], rating=[1, 2])
    with pytest.raises(DataError, match=r"empty after keeping ratings >= 4 \(had 2 interactions"):
        binarize(data, 4)


# -- k-core -----------------------------------------------------------------------------------

def cascade() -> Interactions:
    # u4 (1 row) goes first; then item C has only u3 left (1 < 2); then u3 has only B (1 < 2).
    return Interactions.from_raw(["u1", "u1", "u2", "u2", "u3", "u3", "u4"],
                                 ["A", "B", "A", "B", "B", "C", "C"])


def test_k_core_is_iterative():
    out = k_core(cascade(), 2, 2)
    assert pairs(out) == [("u1", "A"), ("u1", "B"), ("u2", "A"), ("u2", "B")]


def test_k_core_compacts_by_default_and_keeps_raw_ids():
    data = cascade()
    out = k_core(data, 2, 2)
    assert (out.n_users, out.n_items) == (2, 2)
    assert out.users.raw.tolist() == ["u1", "u2"] and out.items.raw.tolist() == ["A", "B"]
    assert out.user.tolist() == [0, 0, 1, 1] and out.item.tolist() == [0, 1, 0, 1]


def test_k_core_without_compaction_keeps_indices():
    data = cascade()
    out = k_core(data, 2, 2, compact=False)
    assert (out.n_users, out.n_items) == (4, 3)
    assert out.user.tolist() == data.user[:4].tolist()
    assert out.item.tolist() == data.item[:4].tolist()


def test_k_core_counts_duplicate_rows():
    data = Interactions.from_raw(["u1", "u1", "u2"], ["A", "A", "B"])
    assert pairs(k_core(data, 2, 1)) == [("u1", "A"), ("u1", "A")]


def test_k_core_separate_user_and_item_thresholds():
    # user_k=3 drops u2 (2 rows); item_k=1 keeps every item of the remaining users.
    data = Interactions.from_raw(["u1", "u1", "u1", "u2", "u2"], ["A", "B", "C", "A", "D"])
    out = k_core(data, 3, 1)
    assert pairs(out) == [("u1", "A"), ("u1", "B"), ("u1", "C")]
    assert out.items.raw.tolist() == ["A", "B", "C"]


def test_k_core_empty_result_error_message():
    data = Interactions.from_raw(np.arange(1234), np.arange(1234))
    with pytest.raises(DataError) as err:
        k_core(data, 5, 5)
    assert str(err.value) == "dataset is empty after 5-core filtering (had 1,234 interactions)"


def test_compact_drops_unused_ids_keeping_order():
    data = Interactions.from_raw(["a", "b", "c", "d"], [10, 20, 30, 40]).take(np.array([3, 1]))
    out = compact(data)
    assert out.users.raw.tolist() == ["b", "d"] and out.items.raw.tolist() == [20, 40]
    assert out.user.tolist() == [1, 0] and out.item.tolist() == [1, 0]
    assert pairs(out) == pairs(data) == [("d", 40), ("b", 20)]


# -- deduplicate ------------------------------------------------------------------------------

def dup_table() -> Interactions:
    # (u1, A): rows 0, 2, 4 all at t=2 (a tie: file order decides); (u2, A): rows 3 (t=3), 5 (t=1).
    return Interactions.from_raw(["u1", "u1", "u1", "u2", "u1", "u2"],
                                 ["A", "B", "A", "A", "A", "A"],
                                 timestamp=[2, 1, 2, 3, 2, 1], rating=[0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize("policy, rows", [("keep", [0, 1, 2, 3, 4, 5]),
                                          ("first", [0, 1, 5]),
                                          ("last", [1, 3, 4])])
def test_deduplicate_policies(policy, rows):
    assert deduplicate(dup_table(), policy).rating.tolist() == rows


def test_deduplicate_without_timestamps_uses_file_order():
    data = Interactions.from_raw([1, 1, 1, 2], [7, 8, 7, 7], rating=[0, 1, 2, 3])
    assert deduplicate(data, "first").rating.tolist() == [0, 1, 3]
    assert deduplicate(data, "last").rating.tolist() == [1, 2, 3]


def test_deduplicate_error_counts_and_names_an_example():
    with pytest.raises(DataError) as err:
        deduplicate(dup_table(), "error")
    assert str(err.value).startswith("found 3 duplicate (user, item) rows, "
                                     "e.g. user 'u1' and item 'A';")


def test_deduplicate_error_passes_clean_data():
    data = Interactions.from_raw([1, 1, 2], [1, 2, 1])
    assert len(deduplicate(data, "error")) == 3


def test_deduplicate_unknown_policy_lists_policies():
    with pytest.raises(DataError, match="unknown duplicates policy 'newest'; choose one of: "
                                        "keep, first, last, error"):
        deduplicate(dup_table(), "newest")


# -- preprocess -------------------------------------------------------------------------------

def test_preprocess_thresholds_before_deduplicating():
    # (u1, A) twice: rating 5 at t=1, rating 1 at t=2. Threshold first leaves the rating-5 row;
    # deduplicating first would keep the (later) rating-1 row and then lose it to the threshold.
    data = Interactions.from_raw(["u1", "u1", "u2"], ["A", "A", "B"],
                                 timestamp=[1, 2, 3], rating=[5, 1, 4])
    out = preprocess(data, threshold=3, duplicates="last")
    assert pairs(out) == [("u1", "A"), ("u2", "B")]
    assert out.rating.tolist() == [5, 4]


def test_preprocess_deduplicates_before_k_core():
    # u1's two rows are one pair: after dedup u1 has 1 row and falls to the 2-core.
    data = Interactions.from_raw(["u1", "u1", "u2", "u2"], ["A", "A", "A", "B"])
    assert pairs(preprocess(data, duplicates="first", user_k=2)) == [("u2", "A"), ("u2", "B")]
    assert pairs(preprocess(data, duplicates="keep", user_k=2)) == pairs(data)


def test_preprocess_compacts_and_records_steps():
    data = Interactions.from_raw(["u1", "u2", "u3"], ["A", "B", "C"], rating=[5, 1, 5],
                                 meta={"name": "toy"})
    out = preprocess(data, threshold=4)
    assert (out.n_users, out.n_items) == (2, 2)
    assert pairs(out) == [("u1", "A"), ("u3", "C")]
    assert out.meta["name"] == "toy"
    assert out.meta["preprocess"]["rows_in"] == 3 and out.meta["preprocess"]["rows_out"] == 2
    assert preprocess(data, threshold=4, compact=False).n_users == 3


def test_preprocess_empty_result_is_an_error():
    with pytest.raises(DataError, match=r"empty after \(user 3, item 1\)-core filtering "
                                        r"\(had 4 interactions\)"):
        preprocess(cascade().take(np.arange(4)), user_k=3, item_k=1)


def test_preprocess_empty_input_is_an_error():
    with pytest.raises(DataError, match="empty"):
        preprocess(cascade().take(np.zeros(7, bool)))


# -- fast stable sorting ----------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.lists(st.integers(-3, 3), max_size=60).map(lambda v: np.array(v, np.int32)),
    st.lists(st.integers(-2 ** 62, 2 ** 62), max_size=30).map(lambda v: np.array(v, np.int64)),
    st.lists(st.integers(0, 2 ** 64 - 1), max_size=30).map(lambda v: np.array(v, np.uint64)),
    st.lists(st.sampled_from([0.0, -1.5, 2.0, 1e300, np.inf, -np.inf, np.nan, 3.0]),
             max_size=60).map(lambda v: np.array(v, np.float64)),
    st.lists(st.integers(0, 5), max_size=60).map(lambda v: np.array(v, np.float64) * 1e9),
    st.lists(st.booleans(), max_size=40).map(lambda v: np.array(v, bool)),
))
def test_stable_argsort_matches_numpy(key):
    assert stable_argsort(key).tolist() == np.argsort(key, kind="stable").tolist()


@pytest.mark.parametrize("with_time", [True, False])
def test_time_order_matches_lexsort(with_time):
    rng = np.random.default_rng(0)
    n = 5000
    data = Interactions.from_raw(rng.integers(0, 50, n), rng.integers(0, 30, n),
                                 timestamp=rng.integers(0, 20, n) * 0.5 if with_time else None)
    expected = (np.lexsort((np.arange(n), data.timestamp, data.user)) if with_time
                else np.argsort(data.user, kind="stable"))
    assert data.time_order().tolist() == expected.tolist()
