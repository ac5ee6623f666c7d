"""Readers: every format on tiny hand-written files, auto-detection, bad input, and the real data.

Fixture files live in tests/fixtures/readers (see each test for the hand-checked values); binary
inputs (npz, pickles) and malformed files are written to tmp_path by the tests themselves.
"""

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from memrec.errors import DataError
from memrec.data.readers import FORMATS, Dataset, load, load_kg
from memrec.data.readers.detect import detect_format

from .conftest import shared_path

FIX = Path(__file__).parent / "fixtures" / "readers"


def raw_rows(ds: Dataset) -> list[tuple]:
    """Interactions as (raw user, raw item[, rating][, timestamp]) tuples in stored order."""
    x = ds.interactions
    cols = [x.users.raw[x.user].tolist(), x.items.raw[x.item].tolist()]
    cols += [c.tolist() for c in (x.rating, x.timestamp) if c is not None]
    return list(zip(*cols))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- movielens ------------------------------------------------------------------------------
def test_movielens_100k_u_data_with_items_and_users():
    ds = load(FIX / "ml100k")
    assert ds.name == "ml100k" and ds.given_split is None
    x = ds.interactions
    assert (x.n_users, x.n_items, len(x)) == (3, 3, 5)
    assert x.users.raw.tolist() == [3, 1, 2] and x.items.raw.tolist() == [10, 20, 30]
    assert x.users.raw.dtype == np.int64 and x.rating.dtype == np.float32
    assert raw_rows(ds)[1] == (1, 20, 5.0, 881250950.0)
    items = ds.extras["item"]
    assert items["item"].tolist() == [10, 20, 30] and items["title"][0] == "Café (1995)"
    assert list(items.columns[-3:]) == ["unknown", "Action", "Comedy"]  # names from u.genre
    assert items["Comedy"].tolist() == [0, 0, 1]
    assert ds.extras["user"].loc[1, ["user", "occupation"]].tolist() == [2, "other"]


def test_movielens_1m_double_colon_with_colon_in_titles():
    ds = load(FIX / "ml1m" / "ratings.dat")
    assert raw_rows(ds) == [(1, 1193, 5.0, 978300760.0), (1, 661, 3.0, 978302109.0),
                            (2, 1193, 4.0, 978298413.0)]
    movies = ds.extras["item"]
    assert movies["title"].tolist()[1] == "Star Wars: Episode IV (1977)"
    assert movies["genres"].tolist() == ["Drama", "Action|Sci-Fi"]
    assert ds.extras["user"]["age"].tolist() == ["1", "56"]


def test_movielens_20m_csv_with_header_and_quoted_titles():
    ds = load(FIX / "ml20m", "movielens")
    assert raw_rows(ds) == [(1, 2, 3.5, 1112486027.0), (1, 29, 3.5, 1112484676.0),
                            (2, 2, 4.0, 974820889.0)]
    assert ds.extras["item"]["title"][1] == "City of Lost Children, The (1995)"


# -- csv ------------------------------------------------------------------------------------
def test_csv_space_separated_keeps_file_order_without_timestamps():
    ds = load(FIX / "games")
    assert ds.name == "games"
    x = ds.interactions
    assert x.timestamp is None and x.rating is None
    assert x.users.raw.tolist() == [2, 1] and x.items.raw.tolist() == [5, 3, 7, 9]
    indptr, items = x.sequences()
    assert indptr.tolist() == [0, 3, 5] and items.tolist() == [0, 1, 3, 2, 0]


def test_csv_header_aliases_map_columns(tmp_path):
    path = write(tmp_path / "r.csv", "timestamp,item_id,user_id,rating\n9,b,u1,2.5\n3,a,u2,1\n")
    ds = load(path)
    assert ds.name == "r"
    assert raw_rows(ds) == [("u1", "b", 2.5, 9.0), ("u2", "a", 1.0, 3.0)]


def test_csv_columns_mapping_skips_fields_and_reads_string_ids(tmp_path):
    path = write(tmp_path / "x.txt", "i1;junk;7\ni2;junk;7\ni1;more;8\n")
    ds = load(path, columns=["item", "-", "user"], sep=";")
    x = ds.interactions
    assert x.users.raw.tolist() == [7, 8] and x.items.raw.tolist() == ["i1", "i2"]
    assert x.item.tolist() == [0, 1, 0] and x.rating is None


def test_csv_double_colon_separator_keeps_single_colons(tmp_path):
    path = write(tmp_path / "x.dat", "a:1::b::3\nc::b::4\n")
    assert raw_rows(load(path, "csv")) == [("a:1", "b", 3.0), ("c", "b", 4.0)]


def test_csv_session_column_doubles_as_user_and_dates_become_seconds(tmp_path):
    path = write(tmp_path / "clicks.csv",
                 "session_id;user_id;item_id;eventdate\n5;NA;10;1970-01-02\n5;NA;11;1970-01-03\n"
                 "6;NA;10;1970-01-02\n")
    ds = load(path, columns=["session", "-", "item", "timestamp"])
    x = ds.interactions
    assert x.session.tolist() == [5, 5, 6] and x.users.raw.tolist() == [5, 6]
    assert x.timestamp.tolist() == [86400.0, 172800.0, 86400.0]


def test_csv_default_columns_by_field_count_and_header_by_numbers(tmp_path):
    # no header: user, item, rating by position; a header that names no user and item is
    # refused rather than read by position (issue 21: ``alpha,beta,gamma`` trained anyway)
    assert raw_rows(load(write(tmp_path / "y.tsv", "1\t2\t5\n"))) == [(1, 2, 5.0)]
    path = write(tmp_path / "x.tsv", "who\twhat\thow\n1\t2\t5\n")
    with pytest.raises(DataError, match=r"the header \(who, what, how\) has no item and user"):
        load(path)
    assert raw_rows(load(path, "csv", columns=["user", "item", "rating"])) == [(1, 2, 5.0)]


def test_csv_blank_lines_before_header_latin1_ids_and_padded_values(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\n\nuser,item,rating\nJos\xe9, 2, 3.5\nb,3 , 4 \n")
    ds = load(path)
    assert raw_rows(ds) == [("José", 2, 3.5), ("b", 3, 4.0)]


# -- recbole --------------------------------------------------------------------------------
def test_recbole_inter_with_siblings():
    ds = load(FIX / "recbole" / "tiny.inter")
    assert ds.name == "tiny"
    assert raw_rows(ds) == [("u1", "i1", 4.0, 100.0), ("u2", "i1", 3.0, 200.0),
                            ("u1", "i2", 5.0, 300.0)]
    assert ds.extras["item"].columns.tolist() == ["item", "title", "year"]
    assert ds.extras["item"]["year"].tolist() == [1995.0, 2001.0]
    assert ds.extras["user"]["user"].tolist() == ["u1", "u2"]
    assert ds.extras["kg"].values.tolist() == [["m.1", "film.genre", "m.2"],
                                               ["m.3", "film.actor", "m.1"]]
    assert ds.extras["link"].values.tolist() == [["i1", "m.1"], ["i2", "m.3"]]


def test_recbole_session_inter(tmp_path):
    path = write(tmp_path / "s.inter",
                 "session_id:token\titem_id:token\ttimestamp:float\n1\t4\t0.5\n1\t5\t0.7\n")
    x = load(path).interactions
    assert x.session.tolist() == [1, 1] and x.users.raw.tolist() == [1]


# -- ncf ------------------------------------------------------------------------------------
def test_ncf_given_split_and_negatives():
    ds = load(FIX / "ncf")
    assert ds.name == "ncf"  # a folder names the dataset; the file stem when given a file
    assert load(FIX / "ncf" / "tiny.test.rating").name == "tiny"
    x, split = ds.interactions, ds.given_split
    assert split.kind == "given" and len(x) == 5
    assert x.users.raw.tolist() == [0, 1]
    assert x.items.raw.tolist() == [0, 1, 2, 3, 4]  # item 4 appears only as a negative
    assert split.train.item.tolist() == [1, 2, 0] and split.test.item.tolist() == [3, 2]
    assert split.test.user.tolist() == [0, 1] and split.test.timestamp.tolist() == [200, 201]
    assert split.test_negatives.users.tolist() == [0, 1]
    assert split.test_negatives.negatives.tolist() == [[0, 4], [1, 3]]


# -- cmn ------------------------------------------------------------------------------------
def _npz(path: Path, train: np.ndarray, test: dict) -> Path:
    np.savez(path, train_data=train, test_data=np.array(test, dtype=object))
    return path


def test_cmn_npz_given_split(tmp_path):
    train = np.asfortranarray(np.array([[0, 1], [0, 2], [1, 0]], dtype=np.uint32))
    test = {np.int64(1): (np.int64(3), [1, 5]), np.int64(0): (np.int64(4), [3, 0])}
    ds = load(_npz(tmp_path / "tiny.npz", train, test))
    x, split = ds.interactions, ds.given_split
    assert ds.name == "tiny" and split.kind == "given"
    assert (x.n_users, x.n_items, len(x)) == (2, 6, 5)
    assert split.train.user.tolist() == [0, 0, 1] and split.train.item.tolist() == [1, 2, 0]
    assert split.test.user.tolist() == [0, 1] and split.test.item.tolist() == [4, 3]
    assert split.test_negatives.users.tolist() == [0, 1]
    assert split.test_negatives.negatives.tolist() == [[3, 0], [1, 5]]


def test_cmn_refuses_a_malicious_object_array(tmp_path):
    target = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array(Exploit(), dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train_data.npy", _npy_bytes(np.zeros((1, 2), np.uint32)))
        z.writestr("test_data.npy", buf.getvalue())
    with pytest.raises(DataError, match=r"evil.npz:test_data.npy: refusing to unpickle"):
        load(path)
    assert not target.exists()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


# -- session --------------------------------------------------------------------------------
def _session_folder(folder: Path, train, test) -> Path:
    folder.mkdir()
    (folder / "all_train_seq.txt").write_bytes(pickle.dumps(train, protocol=3))
    (folder / "test.txt").write_bytes(pickle.dumps(test, protocol=3))
    return folder


def test_session_pickles(tmp_path):
    folder = _session_folder(tmp_path / "sess", [[5, 7, 5], [9, 7]], ([[7], [7, 9]], [3, 5]))
    ds = load(folder)
    x, split = ds.interactions, ds.given_split
    assert ds.name == "sess" and split.kind == "session"
    assert x.items.raw.tolist() == [3, 5, 7, 9]  # train and test items, sorted
    assert x.users.raw.tolist() == [0, 1] and x.session.tolist() == [0, 0, 0, 1, 1]
    assert x.item.tolist() == [1, 2, 1, 3, 2] and x.timestamp.tolist() == [0, 1, 2, 3, 4]
    assert len(split.train) == 5 and len(split.test) == 0 and split.test.items is x.items
    cases = split.test_cases
    assert cases.indptr.tolist() == [0, 1, 3] and cases.items.tolist() == [2, 2, 3]
    assert cases.targets.tolist() == [0, 1] and cases.users.tolist() == [-1, -1]


def test_session_pickle_with_code_is_refused(tmp_path):
    folder = _session_folder(tmp_path / "s", [[1, 2]], ([[1]], [2]))
    (folder / "test.txt").write_bytes(b"cos\nsystem\n(Vtrue\ntR.")
    with pytest.raises(DataError, match=r"test.txt: refusing to unpickle os.system"):
        load(folder)


# -- kg -------------------------------------------------------------------------------------
def test_kgcn_folder_and_load_kg():
    ds = load(FIX / "lastfm")
    assert ds.name == "lastfm"
    assert raw_rows(ds) == [(2, 51, 13883.0), (2, 52, 11690.0), (3, 51, 5.0)]
    assert ds.extras["kg"].values.tolist() == [["0", "music.artist.genre", "2"],
                                               ["1", "music.artist.origin", "2"]]
    assert ds.extras["link"]["item"].tolist() == [51, 52]
    assert ds.extras["link"]["entity"].tolist() == ["0", "1"]
    triples, link = load_kg(FIX / "lastfm" / "kg.txt")
    assert triples.columns.tolist() == ["head", "relation", "tail"] and len(link) == 2
    triples, link = load_kg(FIX / "recbole" / "tiny.kg")
    assert triples["tail"].tolist() == ["m.2", "m.1"] and link["entity"].tolist() == ["m.1", "m.3"]


# -- detection ------------------------------------------------------------------------------
@pytest.mark.parametrize("rel,fmt", [
    ("ml100k", "movielens"), ("ml100k/u.data", "movielens"), ("ml1m", "movielens"),
    ("ml20m/ratings.csv", "movielens"), ("recbole", "recbole"), ("recbole/tiny.inter", "recbole"),
    ("ncf", "ncf"), ("ncf/tiny.test.negative", "ncf"), ("lastfm", "kg"),
    ("lastfm/user_artists.dat", "kg"), ("games", "csv"), ("games/Video.txt", "csv")])
def test_detect_fixture_formats(rel, fmt):
    assert detect_format(FIX / rel)[0] == fmt


def test_detect_binary_formats(tmp_path):
    npz = _npz(tmp_path / "c.npz", np.zeros((1, 2), np.uint32), {0: (1, [2])})
    sessions = _session_folder(tmp_path / "s", [[1, 2]], ([[1]], [2]))
    assert detect_format(npz) == ("cmn", npz)
    assert detect_format(sessions) == ("session", sessions)
    assert detect_format(sessions / "test.txt") == ("session", sessions)


def test_registry_names():
    assert set(FORMATS) == {"csv", "movielens", "recbole", "ncf", "cmn", "session", "kg", "ripplenet"}


# -- label files: RippleNet / KGCN preprocessed, and label columns ------------------------------
def test_ripplenet_files_are_detected_and_their_negatives_kept_apart(tmp_path):
    from memrec.data.knowledge import KnowledgeGraph
    from .kg_fixtures import ripplenet_triples, write_ripplenet
    folder = write_ripplenet(tmp_path / "music")
    for target in (folder, folder / "ratings_final.txt", folder / "kg_final.txt"):
        assert detect_format(target) == ("ripplenet", folder)
    rows = [tuple(map(int, line.split("\t"))) for line in (folder / "ratings_final.txt").read_text().splitlines()]
    ds = load(folder)
    assert sorted(raw_rows(ds)) == sorted((u, i) for u, i, y in rows if y == 1)     # label 1: interactions
    negatives = ds.extras["negatives"]
    assert sorted(zip(negatives["user"], negatives["item"])) == sorted((u, i) for u, i, y in rows if y == 0)
    assert ds.notes == ("ratings_final.txt: 150 label-1 rows are the interactions; 150 label-0 rows are "
                        "sampled negatives, kept apart as the dataset's negatives table (not interactions; "
                        "evaluation draws its own negatives)",)
    assert len(ds.extras["kg"]) == len(ripplenet_triples())
    # item i is entity i: every item id of the file is linked, those in no triple are dropped
    graph = KnowledgeGraph.load(folder)
    items = {i for _, i, _ in rows}
    in_graph = {i for i in items if i < 18}
    assert sorted(graph.link_items.tolist()) == sorted(in_graph)
    assert graph.entities.raw[graph.link_entities].tolist() == [str(i) for i in graph.link_items]
    assert graph.dropped_links["entity not in graph"] == len(items - in_graph)


def test_a_folder_with_raw_and_preprocessed_kgcn_files_pairs_each_graph_with_its_ids(tmp_path):
    """KGCN's data/music after its preprocess.py holds both: the ripplenet format reads
    kg_final.txt (ids of ratings_final.txt), the kg format kg.txt (raw ids + linkage)."""
    from memrec.data.readers import knowledge_graph_file
    from .kg_fixtures import write_ripplenet
    folder = write_ripplenet(tmp_path / "music")
    (folder / "kg.txt").write_text("m.1\tmusic.genre\tm.9\n")
    (folder / "item_index2entity_id.txt").write_text("7\tm.1\n")
    (folder / "user_artists.dat").write_text("userID\tartistID\tweight\n1\t7\t3\n")
    assert knowledge_graph_file(folder) == folder / "kg_final.txt"
    assert knowledge_graph_file(folder, "kg") == folder / "kg.txt"
    assert load(folder, "kg").extras["link"]["entity"].tolist() == ["m.1"]


def test_a_label_column_splits_interactions_from_sampled_negatives(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text("user,item,label\n1,10,1\n1,11,0\n2,10,1\n3,12,0\n2,13,1\n")
    ds = load(path)
    assert raw_rows(ds) == [(1, 10), (2, 10), (2, 13)]
    # user 3 and item 12 occur only on negatives: they are no users or items of the data
    assert ds.interactions.users.raw.tolist() == [1, 2] and 12 not in ds.interactions.items.raw.tolist()
    assert ds.extras["negatives"].values.tolist() == [[1, 11], [3, 12]]
    # a header naming a rating reads the same 0/1 column as ratings, every row an interaction
    path.write_text("user,item,rating\n1,10,1\n1,11,0\n2,10,1\n")
    assert len(load(path).interactions) == 3 and "negatives" not in load(path).extras


# -- bad input ------------------------------------------------------------------------------
def test_missing_path():
    with pytest.raises(DataError, match=r"nowhere/u.data: no such file or directory"):
        load("nowhere/u.data")


def test_wrong_field_count_names_file_and_line(tmp_path):
    lines = "".join(f"{u}\t{u + 1}\t3\t88125094{u}\n" for u in range(1, 17)) + "17\t1\n"
    path = write(tmp_path / "u.data", lines)
    with pytest.raises(DataError, match=r"^u.data line 17: expected 4 fields, found 2$"):
        load(path)


def test_non_numeric_rating_names_file_and_line(tmp_path):
    path = write(tmp_path / "ratings.csv",
                 "userId,movieId,rating,timestamp\n1,2,3.5,1\n1,3,abc,2\n")
    with pytest.raises(DataError, match=r"^ratings.csv line 3: rating 'abc' is not a number$"):
        load(path)


def test_bad_line_after_blank_lines_and_header_is_numbered_physically(tmp_path):
    path = write(tmp_path / "b.csv", "\nuser,item,rating\n1,2,3\n\n1,3,\n")
    with pytest.raises(DataError, match=r"^b.csv line 5: rating '' is not a number$"):
        load(path)


def test_empty_user_id(tmp_path):
    path = write(tmp_path / "a.csv", "1,2\n,3\n")
    with pytest.raises(DataError, match=r"^a.csv line 2: empty user id$"):
        load(path)


@pytest.mark.parametrize("text, message", [("", r"e.csv: the file is empty$"),
                                           ("\n\n", r"^e.csv: no interactions$"),
                                           ("userId,movieId,rating,timestamp\n", r"^e.csv: no interactions$")])
def test_empty_file(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load(write(tmp_path / "e.csv", text), "csv")


def test_undetectable_folder_lists_formats(tmp_path):
    write(tmp_path / "notes.md", "nothing here")
    with pytest.raises(DataError, match=r"cannot tell the format \(known: csv, movielens.*--format"):
        load(tmp_path)


def test_option_misuse(tmp_path):
    with pytest.raises(DataError, match="unknown format 'parquet'"):
        load(FIX / "games", "parquet")
    with pytest.raises(DataError, match="apply to the csv format, not movielens"):
        load(FIX / "ml100k", sep="\t")
    with pytest.raises(DataError, match="--columns names 3 fields but the file has 2"):
        load(FIX / "games" / "Video.txt", columns=["user", "item", "rating"])
    with pytest.raises(DataError, match="unknown column 'usr'"):
        load(FIX / "games" / "Video.txt", columns=["usr", "item"])


def test_bad_ncf_negatives_line(tmp_path):
    for name in ("t.train.rating", "t.test.rating"):
        (tmp_path / name).write_text((FIX / "ncf" / name.replace("t.", "tiny.", 1)).read_text())
    write(tmp_path / "t.test.negative", "(0,3)\t0\t4\n(1,2)\t1\n")
    with pytest.raises(DataError, match=r"^t.test.negative line 2: expected 2 negatives, found 1$"):
        load(tmp_path)


def test_bad_kg_line(tmp_path):
    path = write(tmp_path / "kg.txt", "1\tr\t2\n3\tr\n")
    with pytest.raises(DataError, match=r"^kg.txt line 2: expected 3 fields, found 2$"):
        load_kg(path)


# -- the team's real datasets (skipped when ../shared/data is absent) -------------------------
def test_real_ml100k_raw_and_recbole_agree():
    raw = load(shared_path("ml-100k"))
    assert raw.name == "ml-100k" and raw.interactions.meta["format"] == "movielens"
    x = raw.interactions
    assert (x.n_users, x.n_items, len(x)) == (943, 1682, 100_000)
    assert len(raw.extras["item"]) == 1682
    rec = load(shared_path("ml-100k", "recbole", "ml-100k.inter"))
    assert sorted(raw_rows(raw)) == sorted(raw_rows(rec))
    assert len(rec.extras["kg"]) == 91_631 and len(rec.extras["link"]) == 1_598


def test_real_citeulike_a():
    ds = load(shared_path("citeulike-a"))
    split = ds.given_split
    assert len(split.train) == 199_435 and len(split.test) == 5_551
    assert (ds.interactions.n_users, ds.interactions.n_items) == (5_551, 16_980)
    assert split.test_negatives.negatives.shape == (5_551, 100)


def test_real_yoochoose_sessions():
    ds = load(shared_path("yoochoose1_64"))
    assert len(ds.given_split.test_cases) == 55_898
    assert ds.interactions.n_users == 116_167 and len(ds.interactions) == 486_026
    assert ds.interactions.items.raw.max() == 37_483


def test_real_amazon_games():
    x = load(shared_path("amazon-games")).interactions
    assert (x.n_users, x.n_items, len(x)) == (31_013, 23_715, 287_107)


def test_real_lastfm_kg():
    ds = load(shared_path("lastfm-kg"))
    assert ds.interactions.n_users == 1_892 and len(ds.interactions) == 92_834
    kg = ds.extras["kg"]
    assert len(kg) == 15_518 and kg["relation"].nunique() == 60
    assert len(ds.extras["link"]) == 3_846
