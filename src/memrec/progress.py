"""Progress of the long steps around training: log lines to an ``echo`` function (stderr by
default), in the style of the trainer's epoch lines.

Training epochs get a tqdm bar on a terminal (:class:`memrec.training.trainer.Trainer`); reading,
filtering, splitting and fixing negatives are single calls with nothing to count, so they get a
line when they start and one with what they produced and how long it took — enough to see
which step a slow run is in.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def echo_stderr(line: str) -> None:
    """The default destination of progress and training log lines."""
    print(line, file=sys.stderr, flush=True)


def timed_step(echo: Callable[[str], None], doing: str, work: Callable[[], T],
               outcome: Callable[[T], str]) -> T:
    """Run ``work()`` between two lines: ``"{doing}…"`` before (a slow step shows what it is
    doing while it runs) and ``"{outcome(result)} in {seconds}s"`` after. Returns the result."""
    echo(f"{doing}…")
    start = time.perf_counter()
    result = work()
    echo(f"{outcome(result)} in {time.perf_counter() - start:.1f}s")
    return result


__all__ = ["echo_stderr", "timed_step"]
