"""Top-k for every user of a run, as one table file (``memrec recommend RUN --all-users --out F``).

The table has one row per (user, rank): ``user, rank, item, score`` with the dataset's raw ids,
then the item's ``title`` / ``genres`` when a side file beside the run's data has them
(:mod:`memrec.data.item_metadata`). Scoring is :meth:`Recommender.recommend_all` (the batched
path ``memrec recommend --user`` takes, a batch of users per ``score_all`` call); the user's known
items are excluded unless asked otherwise, and a user with fewer than k items left gets a shorter
list. The file is Parquet or CSV by its suffix and is written atomically.

"Every user" means every user the run trained on. A run on a session split is refused: its
users are its training sessions (SR-GNN/STAMP files make each one a pseudo-user), all of them
over, so a table of their next items answers nothing; ``--session CLICKS`` asks about a live one.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .data.item_metadata import item_metadata
from .errors import ConfigError, DataError
from .fileio import atomic_write_bytes, check_output_file
from .recommender import Recommender
from .runs import recorded_run, recorded_split_kind

TABLE_SUFFIXES = (".parquet", ".csv")


def check_table_path(path: str | Path) -> None:
    """Refuse, before any work, a table path memrec cannot write: an unknown suffix, an existing
    file or folder, a missing or read-only folder."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"{path}: the table is written as {' or '.join(TABLE_SUFFIXES)}, chosen by "
                          f"the suffix; {path.suffix or 'no suffix'} is neither")
    check_output_file(path)


def all_users_table(run_dir: str | Path, k: int = 10, *, exclude_seen: bool = True,
                    batch_size: int | None = None, warn=None, device="cpu") -> pd.DataFrame:
    """The top-k table of every user of the run in ``run_dir`` (see the module docstring).

    ``batch_size`` users per scoring call (None: the run's ``train.eval_batch_size``, which its
    evaluation fitted in memory); ``warn(line)`` hears about an unreadable item side file (the
    table is then written without metadata); ``device``: where the model scores (a
    ``torch.device`` or a name, as :meth:`Recommender.load` takes)."""
    run_dir = Path(run_dir)
    rec = Recommender.load(run_dir, device)
    if recorded_split_kind(run_dir) == "session":
        raise ConfigError(f"{run_dir} is a session run: its users are its training sessions, so "
                          "there are no users to recommend for; use --session CLICKS for a live session")
    run = recorded_run(run_dir)
    metadata = _metadata(run.get("data_path"), warn)
    if batch_size is None:
        batch_size = run.get("config", {}).get("train", {}).get("eval_batch_size", 1024)
    users, items, scores = rec.recommend_all(k, exclude_seen=exclude_seen, batch_size=batch_size)
    return recommendations_table(users, items, scores, metadata)


def _metadata(data_path: str | None, warn) -> pd.DataFrame | None:
    """The item side file's metadata, or None (no data path recorded, nothing found, or a file
    that does not parse: titles are a convenience, not worth failing the table for)."""
    if data_path is None:
        return None
    try:
        return item_metadata(data_path)
    except DataError as e:
        if warn is not None:
            warn(f"item metadata left out: {e}")
        return None


def recommendations_table(users: np.ndarray, items: np.ndarray, scores: np.ndarray,
                          metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table ``user, rank, item, score[, metadata columns]`` from raw user ids [U] and raw
    item ids and scores [U, k]; −inf scores (known items past the end of a short list) dropped."""
    n_users, width = items.shape
    table = pd.DataFrame({"user": np.repeat(users, width),
                          "rank": np.tile(np.arange(1, width + 1, dtype=np.int64), n_users),
                          "item": items.ravel(), "score": scores.ravel().astype(np.float64)})
    table = table[np.isfinite(table["score"].to_numpy())].reset_index(drop=True)
    if metadata is None:
        return table
    return _with_metadata(table, metadata)


def _with_metadata(table: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """Left-join on the item id, compared as text when the two spell ids differently (ints in
    the ratings, strings in a side file), so nothing silently fails to match on dtype."""
    if table["item"].dtype != metadata["item"].dtype:
        metadata = metadata.assign(item=metadata["item"].astype(str))
        keys = table["item"].astype(str)
        joined = pd.DataFrame({"item": keys}).merge(metadata, on="item", how="left", validate="many_to_one")
        return pd.concat([table, joined.drop(columns="item")], axis=1)
    return table.merge(metadata, on="item", how="left", validate="many_to_one")


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """``table`` as Parquet or CSV (by ``path``'s suffix), written atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    if path.suffix.lower() == ".parquet":
        table.to_parquet(buffer, index=False)
    else:
        table.to_csv(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


__all__ = ["TABLE_SUFFIXES", "check_table_path", "all_users_table", "recommendations_table", "write_table"]
