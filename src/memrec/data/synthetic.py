"""The embedded default dataset: a deterministic synthetic generator with planted structure.

memrec ships no real data. ``make demo`` and the learnability tests use this generator instead:
it is small, fast, seeded (same config → byte-identical output) and has structure that a
memory or sequence model can learn and that popularity cannot.

Generative story
----------------
1. **Items and clusters.** The ``n_items`` items are shuffled and cut into ``n_clusters``
   interest clusters of near-equal size. Clusters have a popularity of their own (Zipf with
   exponent ``cluster_skew`` over a random cluster order) and, inside each cluster, items have a
   Zipf profile with exponent ``popularity_skew`` over a random item order. Global popularity is
   therefore skewed — a meaningful baseline — but it ignores who the user is.
2. **Planted transitions.** Every item ``a`` gets ``n_successors`` successors drawn from its own
   cluster, with fixed decreasing weights (``1, 1/2, 1/3, …`` normalised): "after ``a`` people
   often take ``b``". This is the sequential signal, and also cluster-level co-occurrence.
3. **Users and interests.** Each user draws ``clusters_per_user`` distinct interests (clusters,
   by cluster popularity) with Dirichlet(1) weights, a length
   ``min_length + LogNormal`` with mean ``mean_length`` (capped at ``n_items // 2`` without
   repeats), a start time uniform over
   ``time_span`` days and a personal mean gap between events.
4. **Drift.** The user's *active* interest is a Markov chain: before each event, with
   probability ``drift`` the user switches to another of their interests (by weight). With
   probability ``renewal`` a switch instead goes to a *new* cluster, which replaces the interest
   being left (keeping its weight) — so late behaviour differs from early behaviour. With
   ``drift=0`` a user stays in their first interest for good.
5. **Next event.** A mixture: with probability ``transition_strength`` follow a planted
   transition from the previous item; with probability ``noise`` take a uniformly random item
   of the whole catalogue; otherwise sample the active cluster by its popularity profile.
   Without ``allow_repeats`` an item the user already has is resampled (a followed transition
   tries the other successors first, then falls back to the cluster; an exhausted cluster falls
   back to a random unseen item).
6. **Ratings and time.** Ratings are integers 1–5: around 4.3 for an item of the active
   interest, 3.5 for another of the user's interests, 2.2 otherwise, plus Gaussian noise.
   Timestamps are integer seconds, strictly increasing per user (gaps ≥ 1 s); users start at
   different times, so they interleave in global time and a global temporal split works. Rows
   are ordered by (timestamp, user, position).

:func:`generate_with_truth` also returns the planted truth (:class:`SynthTruth`).

The typed event log of the purchase model (views, carts, purchases) has its own generator,
:mod:`memrec.data.typed_sessions`.

Raw ids are plain integers: user ``u`` is ``u`` and item ``i`` is ``i``; the returned
:class:`Interactions` uses identity id maps (``IdMap.range``), so indices equal raw ids and
``n_users`` / ``n_items`` equal the configured sizes even if some item is never drawn.

Example
-------
>>> data = generate(SynthConfig(n_users=50, n_items=100, seed=1))
>>> data.n_users, data.n_items
(50, 100)
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .interactions import IdMap, Interactions

EPOCH = 1_577_836_800  # 2020-01-01T00:00:00Z, the first possible timestamp (of both generators)
_DAY = 86_400


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of :func:`generate` (see the module docstring for the story).

    Parameters
    ----------
    n_users, n_items : int
    n_clusters : int
        Item interest clusters (each gets ``n_items // n_clusters`` items or one more).
    clusters_per_user : int
        A user's number of simultaneous interests.
    mean_length : float
        Mean events per user; lengths are ``min_length`` plus a log-normal part.
    min_length : int
        Smallest user history.
    drift : float
        Probability per event of switching the active interest.
    renewal : float
        Probability that a switch goes to a new cluster replacing the interest left.
    transition_strength : float
        Probability per event of following a planted transition from the previous item.
    n_successors : int
        Planted successors per item.
    popularity_skew : float
        Zipf exponent of item popularity inside a cluster.
    cluster_skew : float
        Zipf exponent of cluster popularity (how often clusters are chosen as interests).
    noise : float
        Probability per event of a uniformly random item.
    allow_repeats : bool
        Allow a user to take the same item twice (default: resample).
    time_span : float
        Days over which user start times are spread.
    mean_gap : float
        Median over users of the mean gap between a user's events, in hours.
    seed : int
    """

    n_users: int = 600
    n_items: int = 800
    n_clusters: int = 12
    clusters_per_user: int = 3
    mean_length: float = 40.0
    min_length: int = 5
    drift: float = 0.05
    renewal: float = 0.3
    transition_strength: float = 0.15
    n_successors: int = 3
    popularity_skew: float = 1.0
    cluster_skew: float = 1.0
    noise: float = 0.1
    allow_repeats: bool = False
    time_span: float = 365.0
    mean_gap: float = 24.0
    seed: int = 0

    def __post_init__(self):
        if self.n_users < 1 or self.n_items < 1:
            raise ValueError("n_users and n_items must be positive")
        if not 1 <= self.n_clusters <= self.n_items:
            raise ValueError("n_clusters must be in [1, n_items]")
        if not 1 <= self.clusters_per_user <= self.n_clusters:
            raise ValueError("clusters_per_user must be in [1, n_clusters]")
        if self.min_length < 1 or self.mean_length < self.min_length:
            raise ValueError("need 1 <= min_length <= mean_length")
        if not self.allow_repeats and self.min_length > self.n_items:
            raise ValueError("min_length exceeds n_items and repeats are not allowed")
        for name in ("drift", "renewal", "transition_strength", "noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        if self.transition_strength + self.noise > 1.0:
            raise ValueError("transition_strength + noise must not exceed 1")
        if self.n_successors < 1:
            raise ValueError("n_successors must be >= 1")


@dataclass(frozen=True, eq=False)
class _World:
    """The user-independent part of the story: clusters, popularity, transitions."""

    cluster_of: np.ndarray           # int64 [n_items]
    members: list[list[int]]         # cluster -> item ids, most popular first
    cdfs: list[list[float]]          # cluster -> cumulative popularity (last entry 1.0)
    cluster_p: np.ndarray            # float64 [n_clusters], cluster popularity
    successors: list[list[int]]      # item -> successor ids, strongest first
    succ_cdf: list[float]            # cumulative successor weights (shared by all items)


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Zipf probabilities over ranks 1..n: p_r ∝ r^(−exponent), summing to 1 → float64 [n]."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


def _build_world(cfg: SynthConfig, rng: np.random.Generator) -> _World:
    perm = rng.permutation(cfg.n_items)
    parts = np.array_split(perm, cfg.n_clusters)
    cluster_of = np.empty(cfg.n_items, np.int64)
    members, cdfs = [], []
    for c, part in enumerate(parts):
        cluster_of[part] = c
        # ``part`` is already a random order: its first item is the most popular.
        members.append(part.tolist())
        cdf = np.cumsum(zipf_weights(len(part), cfg.popularity_skew))
        cdf[-1] = 1.0
        cdfs.append(cdf.tolist())
    cluster_p = zipf_weights(cfg.n_clusters, cfg.cluster_skew)[rng.permutation(cfg.n_clusters)]

    k = cfg.n_successors
    successors: list[list[int]] = [[] for _ in range(cfg.n_items)]
    for part in parts:
        m = len(part)
        if m == 1:
            successors[int(part[0])] = [int(part[0])]
            continue
        kk = min(k, m - 1)
        for pos in range(m):
            # kk distinct other members of the cluster, uniformly at random.
            offs = rng.choice(m - 1, size=kk, replace=False) + 1
            successors[int(part[pos])] = part[(pos + offs) % m].tolist()
    w = 1.0 / np.arange(1, k + 1)
    succ_cdf = np.cumsum(w / w.sum())
    succ_cdf[-1] = 1.0
    return _World(cluster_of, members, cdfs, cluster_p, successors, succ_cdf.tolist())


def _lengths(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    extra_mean = cfg.mean_length - cfg.min_length
    sigma = 0.8
    if extra_mean > 0:
        mu = math.log(extra_mean) - sigma**2 / 2
        extra = np.rint(rng.lognormal(mu, sigma, cfg.n_users)).astype(np.int64)
    else:
        extra = np.zeros(cfg.n_users, np.int64)
    cap = cfg.n_items if not cfg.allow_repeats else 1 << 30
    return np.minimum(cfg.min_length + extra, max(cap // 2, cfg.min_length))


class _UserWalk:
    """One user's event loop (steps 4–5 of the story)."""

    def __init__(self, cfg: SynthConfig, world: _World, rng: np.random.Generator):
        self.cfg, self.world, self.rng = cfg, world, rng

    def _from_cluster(self, c: int, seen: set[int]) -> int | None:
        members, cdf = self.world.members[c], self.world.cdfs[c]
        repeats = self.cfg.allow_repeats
        for u in self.rng.random(24).tolist():
            item = members[min(bisect.bisect_right(cdf, u), len(members) - 1)]
            if repeats or item not in seen:
                return item
        # Rejection keeps failing: the popular part of the cluster is used up. Sample exactly.
        free = [j for j, item in enumerate(members) if item not in seen]
        if not free:
            return None
        p = np.diff(np.concatenate([[0.0], cdf]))[free]
        return members[free[int(self.rng.choice(len(free), p=p / p.sum()))]]

    def _random_item(self, seen: set[int]) -> int:
        n = self.cfg.n_items
        for u in self.rng.random(8).tolist():
            item = min(int(u * n), n - 1)
            if self.cfg.allow_repeats or item not in seen:
                return item
        free = np.setdiff1d(np.arange(n), np.fromiter(seen, np.int64, len(seen)))
        return int(free[self.rng.integers(len(free))])

    def run(self, length: int) -> tuple[list[int], list[int], list[bool]]:
        """Return (items, active cluster per event, item-is-another-interest flag)."""
        cfg, world, rng = self.cfg, self.world, self.rng
        n_c = cfg.n_clusters
        interests = rng.choice(n_c, size=cfg.clusters_per_user, replace=False,
                               p=world.cluster_p).tolist()
        weights = rng.dirichlet(np.ones(cfg.clusters_per_user)).tolist()
        active = interests[bisect.bisect_right(np.cumsum(weights).tolist()[:-1], rng.random())]
        draws = rng.random((length, 4)).tolist()
        seen: set[int] = set()
        items, actives, in_interests = [], [], []
        prev = -1
        for t in range(length):
            u_switch, u_kind, u_pick, u_new = draws[t]
            if t > 0 and u_switch < cfg.drift:
                self_idx = interests.index(active)
                outside = [c for c in range(n_c) if c not in interests]
                if outside and u_new < cfg.renewal:
                    p = world.cluster_p[outside]
                    new = outside[int(rng.choice(len(outside), p=p / p.sum()))]
                    interests[self_idx] = new
                    active = new
                elif len(interests) > 1:
                    others = [j for j in range(len(interests)) if j != self_idx]
                    w = np.asarray([weights[j] for j in others])
                    active = interests[others[int(rng.choice(len(others), p=w / w.sum()))]]
            item = None
            if prev >= 0 and u_kind < cfg.transition_strength:
                succ = world.successors[prev]
                first = min(bisect.bisect_right(world.succ_cdf, u_pick), len(succ) - 1)
                for j in range(len(succ)):
                    cand = succ[(first + j) % len(succ)]
                    if cfg.allow_repeats or cand not in seen:
                        item = cand
                        break
            elif u_kind > 1.0 - cfg.noise:
                item = self._random_item(seen)
            if item is None:
                item = self._from_cluster(active, seen)
            if item is None:
                item = self._random_item(seen)
            seen.add(item)
            items.append(item)
            actives.append(active)
            in_interests.append(int(world.cluster_of[item]) in interests)
            prev = item
        return items, actives, in_interests


@dataclass(frozen=True, eq=False)
class SynthTruth:
    """The planted structure behind one :func:`generate_with_truth` call, for analysis and tests.

    ``active_cluster`` is aligned with the rows of the returned table (it is not carried by
    ``Interactions.take``, so subset the two together).
    """

    item_cluster: np.ndarray    # int64 [n_items], cluster of each item
    successors: np.ndarray      # int64 [n_items, n_successors], planted successors, -1 padded
    active_cluster: np.ndarray  # int64 [N], the user's active interest at each row


def generate(config: SynthConfig = SynthConfig()) -> Interactions:
    """Generate the synthetic dataset described in the module docstring.

    Returns
    -------
    Interactions
        Identity id maps (raw id == index, sizes as configured), integer-second ``timestamp``
        strictly increasing per user, integer ``rating`` in 1..5, rows ordered by
        (timestamp, user, position). ``meta`` is ``{"source": "synthetic", "config": {...}}``.
    """
    return generate_with_truth(config)[0]


def generate_with_truth(config: SynthConfig = SynthConfig()) -> tuple[Interactions, SynthTruth]:
    """:func:`generate`, plus the planted truth (clusters, successors, active interests)."""
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    world = _build_world(cfg, rng)
    lengths = _lengths(cfg, rng)
    starts = rng.uniform(0.0, cfg.time_span * _DAY, cfg.n_users)
    gaps_mean = cfg.mean_gap * 3600.0 * rng.lognormal(0.0, 0.5, cfg.n_users)

    walk = _UserWalk(cfg, world, rng)
    users, items, actives, cols_ts, ratings = [], [], [], [], []
    for u in range(cfg.n_users):
        n = int(lengths[u])
        its, act, other = walk.run(n)
        gaps = 1 + np.floor(rng.exponential(gaps_mean[u], n)).astype(np.int64)
        gaps[0] = 0
        ts = EPOCH + int(starts[u]) + np.cumsum(gaps)
        its_a, act_a = np.asarray(its, np.int64), np.asarray(act, np.int64)
        base = np.where(world.cluster_of[its_a] == act_a, 4.3,
                        np.where(np.asarray(other, bool), 3.5, 2.2))
        r = np.clip(np.rint(base + rng.normal(0.0, 0.7, n)), 1, 5).astype(np.int64)
        users.append(np.full(n, u, np.int64))
        items.append(its_a)
        actives.append(act_a)
        cols_ts.append(ts)
        ratings.append(r)

    user = np.concatenate(users)
    item = np.concatenate(items)
    ts = np.concatenate(cols_ts)
    rating = np.concatenate(ratings)
    pos = np.concatenate([np.arange(len(x)) for x in users])
    order = np.lexsort((pos, user, ts))
    data = Interactions(
        user[order].astype(np.int32), item[order].astype(np.int32),
        IdMap.range(cfg.n_users), IdMap.range(cfg.n_items),
        timestamp=ts[order].astype(np.float64), rating=rating[order].astype(np.float32),
        meta={"source": "synthetic", "config": asdict(cfg)},
    )
    successors = np.full((cfg.n_items, cfg.n_successors), -1, np.int64)
    for i, succ in enumerate(world.successors):
        successors[i, :len(succ)] = succ
    truth = SynthTruth(world.cluster_of.copy(), successors, np.concatenate(actives)[order])
    return data, truth


def write_csv(interactions: Interactions, path: str | Path) -> None:
    """Write ``user,item,rating,timestamp`` with a header, raw ids, rows in table order.

    Ratings and timestamps are written as integers when they are whole numbers; a missing
    column is written empty.
    """
    n = len(interactions)
    user = interactions.users.to_raw(interactions.user).tolist()
    item = interactions.items.to_raw(interactions.item).tolist()

    def column(values: np.ndarray | None) -> list:
        if values is None:
            return [""] * n
        if np.all(np.mod(values, 1) == 0):
            return values.astype(np.int64).tolist()
        return values.tolist()

    rating, ts = column(interactions.rating), column(interactions.timestamp)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user", "item", "rating", "timestamp"])
        w.writerows(zip(user, item, rating, ts))
