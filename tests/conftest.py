"""Shared fixtures. Tests needing the team's real datasets skip with a reason when absent."""

import os
from pathlib import Path

import pytest

# ../shared/data beside the checkout; MEMREC_SHARED_DATA points elsewhere (a worktree one level
# further down, a CI mount)
SHARED_DATA = Path(os.environ.get("MEMREC_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the calling test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the team's shared datasets; absent in a fresh clone)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _transe_cache_in_a_temporary_folder(tmp_path_factory):
    """KSR runs cache TransE vectors (memrec.ksr_knowledge.cache_root): never in the user's
    home during tests, and never shared with an earlier test session."""
    previous = os.environ.get("MEMREC_CACHE")
    os.environ["MEMREC_CACHE"] = str(tmp_path_factory.mktemp("memrec-cache"))
    yield
    if previous is None:
        os.environ.pop("MEMREC_CACHE", None)
    else:
        os.environ["MEMREC_CACHE"] = previous
