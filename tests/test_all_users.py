"""The pieces of ``memrec recommend --all-users``: the item metadata reader and the long table
(the command end to end is in test_cli.py)."""

import numpy as np
import pandas as pd

from memrec.all_users import recommendations_table
from memrec.data.item_metadata import item_metadata


def test_recbole_item_file_one_level_below_gives_title_and_genres(tmp_path):
    (tmp_path / "recbole").mkdir()
    (tmp_path / "recbole" / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Comedy\n2\tHeat\t1995\tCrime\n")
    meta = item_metadata(tmp_path)               # the dataset folder: the file is one level down
    assert list(meta.columns) == ["item", "title", "genres"]
    assert meta["item"].tolist() == [1, 2] and meta["title"].tolist() == ["Toy Story", "Heat"]
    assert item_metadata(tmp_path / "recbole" / "toy.inter")["genres"].tolist() == ["Animation Comedy", "Crime"]


def test_movies_csv_and_no_side_file(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,7,5,0\n")
    assert item_metadata(tmp_path / "ratings.csv") is None
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n7,"Heat (1995)",Action|Crime\n')
    meta = item_metadata(tmp_path / "ratings.csv")
    assert meta.to_dict("list") == {"item": [7], "title": ["Heat (1995)"], "genres": ["Action|Crime"]}
    assert item_metadata(tmp_path / "gone" / "ratings.csv") is None


def test_table_is_long_drops_unranked_slots_and_joins_ids_spelled_differently():
    users = np.array(["a", "b"])
    items = np.array([[10, 11], [12, 10]])
    scores = np.array([[0.9, 0.5], [0.7, -np.inf]], dtype=np.float32)   # b has one item left
    metadata = pd.DataFrame({"item": ["10", "11", "12"], "title": ["x", "y", "z"]})   # ids as text
    table = recommendations_table(users, items, scores, metadata)
    assert table.to_dict("list") == {"user": ["a", "a", "b"], "rank": [1, 2, 1], "item": [10, 11, 12],
                                     "score": [np.float32(0.9), 0.5, np.float32(0.7)],
                                     "title": ["x", "y", "z"]}
    unknown = recommendations_table(users, items, scores, metadata.iloc[:1])
    assert unknown["title"].isna().tolist() == [False, True, True]   # no title: empty, row kept
