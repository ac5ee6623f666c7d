"""The drift slice (memrec.models.demn.drift_scores / drift_slice): spec B.6's users whose
interests shift most between the first and second half of their history, on toy cases by hand."""

from __future__ import annotations

import math

import numpy as np

from memrec.models.demn_drift import drift_scores, drift_slice, genre_profiles, popularity_profiles

#: items 0, 1: genre A; items 2, 3: genre B; item 4: both
FLAGS = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]])


def csr(sequences):
    lengths = [len(s) for s in sequences]
    return np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(sequences).astype(np.int64)


def test_drift_by_hand():
    # user 0: A A | B B → 1 − cos([2, 0], [0, 2]) = 1; user 1: A B | A B → 0; user 2: A A | A A → 0
    # user 3: A A | A (A+B)/2 → 1 − cos([2, 0], [1.5, 0.5]) = 1 − 1.5/√2.5 = 0.0513167
    # user 4: two events, under min_events = 4 → NaN; odd length 5: halves of 2 and 3 events
    indptr, items = csr([[0, 1, 2, 3], [0, 2, 1, 3], [0, 1, 0, 1], [0, 1, 0, 4], [2, 3], [0, 0, 2, 3, 2]])
    scores = drift_scores(indptr, items, genre_profiles(FLAGS), min_events=4)
    assert np.allclose(scores[:4], [1.0, 0.0, 0.0, 1 - 1.5 / math.sqrt(2.5)])
    assert math.isnan(scores[4]) and math.isclose(scores[5], 1.0)
    # the slice: the top half of the 5 eligible users (round(2.5) = 2), ties by user id
    assert drift_slice(indptr, items, genre_profiles(FLAGS), fraction=0.5, min_events=4).tolist() == [0, 5]


def test_genre_profiles_split_an_item_over_its_genres():
    assert genre_profiles(FLAGS)[4].tolist() == [0.5, 0.5]
    assert genre_profiles(np.zeros((1, 3))).tolist() == [[0.0, 0.0, 0.0]]


def test_popularity_profiles_are_equal_count_buckets():
    profiles = popularity_profiles(np.array([5, 1, 9, 3]), buckets=2)
    assert profiles.argmax(1).tolist() == [1, 0, 1, 0] and profiles.sum(1).tolist() == [1, 1, 1, 1]
