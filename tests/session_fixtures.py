"""Session data written as a user would bring it: a raw Diginetica-style click log turned into
SR-GNN session files by ``memrec data sessions`` (shared by the session-model CLI tests)."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from memrec.cli import main


def ring_session_files(tmp_path: Path) -> Path:
    """SR-GNN session files of 200 sessions, each four steps around a ring of 20 items."""
    rng = np.random.default_rng(0)
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for s in range(1, 201):
        start, day = rng.integers(0, 20), 1 + s * 27 // 200
        lines += [f"{s};NA;{100 + (start + k) % 20};{k * 10};2016-05-{day:02d}" for k in range(4)]
    (tmp_path / "views.csv").write_text("\n".join(lines) + "\n")
    folder = tmp_path / "digi"
    result = CliRunner().invoke(main, ["data", "sessions", str(tmp_path / "views.csv"), str(folder),
                                       "--format", "diginetica"])
    assert result.exit_code == 0, result.output
    return folder
