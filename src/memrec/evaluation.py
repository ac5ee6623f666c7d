"""Evaluation protocols: full ranking, sampled ranking, session next-item.

* **full** — rank every item, except those the user already has in the known parts of the split
  (train; train + valid when testing). The honest protocol.
* **sampled** — rank each user's held-out items against the N fixed negatives stored with the
  split (N = 100 as in NCF and CMN). The protocol most memory-network papers report.
* **session** — for each (history → next item) case, rank every item; nothing is excluded
  (sessions may repeat items).

All three are batched: one ``score_all`` / ``score_items`` call per batch of requests, metrics
from :mod:`memrec.metrics` (exact under ties), never a Python loop per user.

The protocols that rank the whole catalogue (full, session) also report the beyond-accuracy
metrics of :mod:`memrec.beyond_accuracy` (Coverage, Gini, Novelty, AvgPop at each K) from the
same top-K lists, with popularity counted on the split's training part; ``beyond_accuracy=False``
skips them (the trainer's per-epoch validation does). ``progress`` shows a bar over the requests.

Asking for a protocol the split cannot run (``sampled`` without stored negatives, ``full`` on a
session split, ``session`` on an interaction split) is a :class:`~memrec.errors.ConfigError`
that says why; ``protocols=None`` runs every protocol the split supports. A metric undefined for
some requests (AUC with no non-relevant candidate) is averaged over the others, and
``"<metric>_undefined"`` reports how many were left out.

Under torchrun (``world``, :mod:`memrec.distributed`) each rank evaluates a contiguous share of
the requests, and the per-request sums and counts (and the catalogue exposures) are added over
the ranks before any ratio is taken: the metrics equal one process's, to float64 rounding.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from . import distributed
from .beyond_accuracy import ExposureAccumulator, item_popularity
from .data.interactions import Interactions
from .data.splits import Candidates, NextItemCases, Split
from .errors import ConfigError
from .metrics import metric_values, rank_counts
from .models.base import Model, Query
from .models.capabilities import AnonymousScorer, make_query

KS = (5, 10, 20)
PROTOCOLS = ("full", "sampled", "session")


def concat_parts(parts: list[Interactions]) -> Interactions:
    """Row-wise union of split parts (same id maps), keeping time order information."""
    first = parts[0]
    cat = lambda name: None if getattr(first, name) is None else np.concatenate(  # noqa: E731
        [getattr(p, name) for p in parts])
    return Interactions(np.concatenate([p.user for p in parts]),
                        np.concatenate([p.item for p in parts]), first.users, first.items,
                        timestamp=cat("timestamp"), rating=cat("rating"), session=cat("session"))


def known_interactions(split: Split, part: str) -> Interactions:
    """What a model may know when evaluated on ``part``: train for valid, train + valid for test."""
    if part == "test" and split.valid is not None and len(split.valid):
        return concat_parts([split.train, split.valid])
    return split.train


@dataclass(frozen=True, eq=False)
class _Targets:
    users: np.ndarray         # int64 [U] users with at least one held-out item
    indptr: np.ndarray        # CSR of their distinct held-out items
    items: np.ndarray


def _targets(heldout: Interactions) -> _Targets:
    matrix = heldout.user_items()
    users = np.flatnonzero(np.diff(matrix.indptr))
    rows = matrix[users]
    return _Targets(users.astype(np.int64), rows.indptr.astype(np.int64),
                    rows.indices.astype(np.int64))


def _padded(indptr: np.ndarray, items: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a CSR list as a right-padded long [B, W] tensor and its mask."""
    q = Query.from_csr(rows, rows, indptr, items)
    return q.history, q.mask


def mask_known_items(scores: torch.Tensor, matrix: sp.csr_matrix, rows: np.ndarray,
                      relevant: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set the scores of each request's known items to −inf (they are not ranked), except its
    relevant items (a repeat consumption is still a target). Returns the number of ranked
    candidates per request. Touches only the known entries: no dense [B, n_items] mask."""
    known = matrix[rows]                                                # CSR [B, n_items]
    coo = known.tocoo()
    batch = torch.arange(len(rows))[:, None].expand_as(relevant)
    b, items = batch[mask], relevant[mask]
    kept = scores[b, items]
    scores[torch.as_tensor(coo.row, dtype=torch.long), torch.as_tensor(coo.col, dtype=torch.long)] = float("-inf")
    scores[b, items] = kept
    known_target = np.asarray(known[b.numpy().copy(), items.numpy().copy()]).ravel() > 0
    repeats = torch.zeros(len(rows), dtype=torch.float64).index_add_(
        0, b, torch.as_tensor(known_target, dtype=torch.float64))
    return scores.shape[1] - torch.as_tensor(np.diff(known.indptr), dtype=torch.float64) + repeats


def _writable(scores: torch.Tensor, model: Model) -> torch.Tensor:
    """``scores``, or a copy where masking them in place would write into the model: a view
    (popularity's expanded counts) or memory shared with a parameter or buffer. A fresh product
    — most models' — is masked as it is: a copy of a full-ranking batch costs as much as
    counting its ranks."""
    shared = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    if scores._is_view() or scores.untyped_storage().data_ptr() in shared:
        return scores.clone()
    return scores


def _part(split: Split, part: str) -> tuple[NextItemCases | None, Interactions | None, Candidates | None]:
    """(session cases, held-out interactions, stored negatives) of a split's valid or test part."""
    return {"valid": (split.valid_cases, split.valid, split.valid_negatives),
            "test": (split.test_cases, split.test, split.test_negatives)}[part]


class MetricAccumulator:
    """Sums per-request metric values over batches; ``mean()`` averages each metric over the
    requests where it is defined (not NaN) and reports how many it left out."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.undefined: dict[str, int] = {}
        self.count = 0                       # requests added

    def add(self, values: dict[str, torch.Tensor]) -> None:
        self.count += len(next(iter(values.values()))) if values else 0
        for name, v in values.items():
            defined = ~torch.isnan(v)
            self.sums[name] = self.sums.get(name, 0.0) + float(v[defined].double().sum())
            self.counts[name] = self.counts.get(name, 0) + int(defined.sum())
            self.undefined[name] = self.undefined.get(name, 0) + int((~defined).sum())

    def merged(self, world: distributed.World) -> "MetricAccumulator":
        """The sums and counts of every rank's accumulator, added in rank order (ranks without
        requests contribute nothing, whatever metrics the others saw)."""
        if not world.distributed:
            return self
        parts = [None] * world.size
        torch.distributed.all_gather_object(parts, (self.sums, self.counts, self.undefined, self.count))
        out = MetricAccumulator()
        for sums, counts, undefined, count in parts:
            for total, part in ((out.sums, sums), (out.counts, counts), (out.undefined, undefined)):
                for name, value in part.items():
                    total[name] = total.get(name, 0) + value
            out.count += count
        return out

    def mean(self) -> dict[str, float]:
        out = {name: (s / self.counts[name] if self.counts[name] else float("nan"))
               for name, s in self.sums.items()}
        out.update({f"{name}_undefined": float(n) for name, n in self.undefined.items() if n})
        return out


class Evaluator:
    """Evaluate models on one part (``"valid"`` or ``"test"``) of a split.

    Precomputes targets, exclusions and histories once, so early stopping can call
    :meth:`evaluate` every epoch cheaply.

    Parameters
    ----------
    split : Split
    part : "valid" | "test"
    protocols : protocols to run (None: every protocol the split supports); one the split cannot
        run is a ConfigError that says why.
    ks : cutoffs.
    batch_size : requests per scoring call.
    beyond_accuracy : also report Coverage, Gini, Novelty and AvgPop for full and session.
    progress : a progress bar over each protocol's requests (None: only when stderr is a terminal).
    world : the ranks sharing the requests (None: torchrun's process group if there is one, else
        this process alone); every rank gets the metrics of all requests.
    """

    def __init__(self, split: Split, part: str = "test", *, protocols=None,
                 ks=KS, batch_size: int = 1024, beyond_accuracy: bool = True,
                 progress: bool | None = False, world: distributed.World | None = None):
        if part not in ("valid", "test"):
            raise ValueError(f"part must be valid or test, not {part!r}")
        self.split, self.part, self.ks, self.batch_size = split, part, tuple(ks), batch_size
        self.beyond_accuracy = beyond_accuracy
        self.world = distributed.current() if world is None else world
        self.progress = self.world.is_main and (sys.stderr.isatty() if progress is None else progress)
        cases, heldout, negatives = _part(split, part)
        self.cases: NextItemCases | None = cases
        self.negatives: Candidates | None = negatives
        supported = self.supported(split, part)
        if protocols is None:
            self.protocols = supported
        else:
            for p in protocols:
                self._check_runs(p, supported)
            self.protocols = tuple(dict.fromkeys(protocols))
        self._runners = {"full": self._full, "sampled": self._sampled, "session": self._session}
        if cases is None and heldout is not None and len(heldout):
            known = known_interactions(split, part)
            self.targets = _targets(heldout)
            self.seen = known.user_items()
            self.history_indptr, self.history_items = known.sequences()
            self.history_times = known.sequence_times()          # None: the events carry no time

    @staticmethod
    def supported(split: Split, part: str) -> tuple[str, ...]:
        """The protocols ``split``'s ``part`` can run."""
        cases, heldout, negatives = _part(split, part)
        if cases is not None:
            return ("session",)
        if heldout is None or not len(heldout):
            return ()
        return ("full", "sampled") if negatives is not None else ("full",)

    def _check_runs(self, protocol: str, supported: tuple[str, ...]) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if protocol in supported:
            return
        if not supported:
            why = f"the split holds nothing in its {self.part} part"
        elif protocol == "session":
            why = ("it ranks the next item of session cases, and this split holds held-out "
                   "interactions (use full or sampled)")
        elif self.cases is not None:
            why = "this is a session split: its cases are next-item predictions (use session)"
        else:
            why = (f"the split stores no sampled negatives for its {self.part} part "
                   "(set data.n_negatives > 0, or use full)")
        raise ConfigError(f"protocol {protocol!r} cannot run: {why}")

    # -- protocols ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: Model) -> dict[str, dict[str, float]]:
        """``{protocol: {"HR@10": ..., ...}}`` for every supported protocol."""
        was_training = model.training
        model.eval()
        try:
            return {p: self._runners[p](model) for p in self.protocols}
        finally:
            model.train(was_training)

    def _batches(self, n: int, protocol: str, lengths: np.ndarray):
        """This rank's requests (all of them in one process) in runs of ``batch_size``, shortest
        history first, counted on a progress bar when asked for. Requests of similar history
        length share a batch, so a model that encodes histories pads little (a heavy-tailed
        log padded to each batch's longest history costs several times the events); metrics
        are sums over requests, whatever their order."""
        mine = self.world.shard(n)
        mine = mine[np.argsort(lengths[mine], kind="stable")]
        with tqdm(total=len(mine), desc=f"{protocol} ranking ({self.part})", unit="req", leave=False,
                  disable=not self.progress, dynamic_ncols=True) as bar:
            for start in range(0, len(mine), self.batch_size):
                rows = mine[start:start + self.batch_size]
                yield rows
                bar.update(len(rows))

    def _history_lengths(self) -> np.ndarray:
        """Known-history length of each evaluated user (``targets.users`` order)."""
        return np.diff(self.history_indptr)[self.targets.users]

    def _mean(self, acc: MetricAccumulator) -> dict[str, float]:
        return acc.merged(self.world).mean()

    def _exposure(self) -> ExposureAccumulator | None:
        return ExposureAccumulator(self.split.train.n_items, self.ks) if self.beyond_accuracy else None

    def _with_catalogue_metrics(self, metrics: dict[str, float],
                                exposure: ExposureAccumulator | None) -> dict[str, float]:
        if exposure is not None:
            exposure.merge_(self.world)
            metrics.update(exposure.metrics(*item_popularity(self.split.train.user_items())))
        return metrics

    def _full(self, model: Model) -> dict[str, float]:
        acc, exposure = MetricAccumulator(), self._exposure()
        t = self.targets
        for rows in self._batches(len(t.users), "full", self._history_lengths()):
            users = t.users[rows]
            relevant, mask = _padded(t.indptr, t.items, rows)
            query = make_query(model, users, self.history_indptr, self.history_items, times=self.history_times)
            scores = _writable(model.score_all(query).detach().float().cpu(), model)
            n_candidates = mask_known_items(scores, self.seen, users, relevant, mask)
            counts = rank_counts(scores, relevant, mask, n_candidates=n_candidates)
            acc.add(metric_values(counts, self.ks))
            if exposure is not None:
                exposure.add(scores)         # the lists just ranked: known items are at −inf
        return self._with_catalogue_metrics(self._mean(acc), exposure)

    def _sampled(self, model: Model) -> dict[str, float]:
        acc = MetricAccumulator()
        t, neg = self.targets, self.negatives
        row_of_user = np.full(self.split.train.n_users, -1, dtype=np.int64)
        row_of_user[neg.users] = np.arange(len(neg.users))
        for rows in self._batches(len(t.users), "sampled", self._history_lengths()):
            users = t.users[rows]
            neg_rows = row_of_user[users]
            if (neg_rows < 0).any():
                raise ValueError("some evaluated users have no stored negatives")
            relevant_items, mask = _padded(t.indptr, t.items, rows)
            negatives = torch.as_tensor(neg.negatives[neg_rows], dtype=torch.long)
            candidates = torch.cat([relevant_items, negatives], dim=1)
            width = relevant_items.shape[1]
            # a stored negative the user already has (files like CMN's npz were not filtered)
            # is not ranked, exactly as in the full protocol
            known = torch.as_tensor(self._is_known(users, neg.negatives[neg_rows]))
            excluded = torch.cat([~mask, known], dim=1)
            relevant = torch.arange(width).expand(len(rows), width)
            query = make_query(model, users, self.history_indptr, self.history_items, times=self.history_times)
            scores = model.score_items(query, candidates.to(model.device)).detach().float().cpu()
            acc.add(metric_values(rank_counts(scores, relevant, mask, excluded), self.ks))
        return self._mean(acc)

    def _is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool [B, N]: whether items[b, n] is among users[b]'s known (train/valid) items."""
        rows = self.seen[users]
        present = np.asarray(rows[np.arange(len(users))[:, None], items].todense()) > 0
        return present

    def _session(self, model: Model) -> dict[str, float]:
        acc, exposure = MetricAccumulator(), self._exposure()
        c = self.cases
        if not isinstance(model, AnonymousScorer) and (c.users < 0).any():
            raise ConfigError(f"{type(model).__name__} scores known users only; the session "
                              "protocol's requests are anonymous sessions")
        for rows in self._batches(len(c), "session", np.diff(c.indptr)):
            query = make_query(model, c.users[rows], c.indptr, c.items, rows=rows, times=c.times)
            scores = model.score_all(query).detach().float().cpu()
            relevant = torch.as_tensor(c.targets[rows], dtype=torch.long)[:, None]
            mask = torch.ones_like(relevant, dtype=torch.bool)
            acc.add(metric_values(rank_counts(scores, relevant, mask), self.ks))
            if exposure is not None:
                exposure.add(scores)
        return self._with_catalogue_metrics(self._mean(acc), exposure)
