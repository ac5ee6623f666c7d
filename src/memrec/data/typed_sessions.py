"""A synthetic typed event log (views, carts, purchases) with a planted event → purchase signal.

The purchase deep memory network (``models/dmn.py``) reads *typed* sessions: which kind of event
touched an item matters, not just the item. This generator plants exactly that: carting a
"trigger" item makes the session buy its partner, viewing it does not, so an item-only model
cannot find the signal (see :class:`TypedSessionConfig` for the story and the leakage trap).
The event type codes are :data:`EVENT_TYPES`, stored in ``Interactions.rating``.

It shares the Zipf profile and the first timestamp with the interaction generator,
:mod:`memrec.data.synthetic`, and nothing else.

Example
-------
>>> data, truth = generate_typed_sessions(TypedSessionConfig(n_sessions=20, seed=1))
>>> sorted(set(data.rating.astype(int).tolist())) <= [VIEW, CART, PURCHASE]
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .interactions import IdMap, Interactions
from .synthetic import EPOCH, zipf_weights

__all__ = ["EVENT_TYPES", "VIEW", "CART", "PURCHASE", "TypedSessionConfig", "TypedSessionTruth",
           "generate_typed_sessions"]


#: event type codes of a typed session log (stored in ``Interactions.rating``)
EVENT_TYPES = ("view", "cart", "purchase")
VIEW, CART, PURCHASE = range(3)


@dataclass(frozen=True)
class TypedSessionConfig:
    """Parameters of :func:`generate_typed_sessions`.

    The story: each session browses items (Zipf-popular, plus "trigger" items), carting some of
    them, and usually ends in one purchase. **Planted signal:** carting trigger x makes the
    session buy ``partner[x]`` with probability ``signal_strength``. *Viewing* x carries no
    signal, so the event type matters: an item-only model cannot tell the two apart. After the
    purchase a session may go on with views of the bought item (``post_purchase_views``): a
    leakage trap — a model that let events at or after the purchase into its memory would find
    the target there.

    Parameters
    ----------
    n_sessions, n_items : int
    n_triggers : int
        Items carrying a planted signal (each with one partner item, never itself a trigger).
    mean_events : float
        Mean browsing events before the purchase (1 + Poisson(mean − 1)).
    trigger_rate : float
        Probability an event is about a trigger item.
    cart_rate : float
        Probability an event is a cart (else a view).
    purchase_rate : float
        Probability a session ends in a purchase.
    signal_strength : float
        Probability a session that carted a trigger buys its partner (the last carted trigger).
    post_purchase_views : float
        Probability a purchase is followed by 1–2 views of the bought item.
    popularity_skew : float
        Zipf exponent of item popularity.
    seed : int
    """

    n_sessions: int = 3000
    n_items: int = 200
    n_triggers: int = 20
    mean_events: float = 5.0
    trigger_rate: float = 0.3
    cart_rate: float = 0.25
    purchase_rate: float = 0.9
    signal_strength: float = 0.9
    post_purchase_views: float = 0.5
    popularity_skew: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.n_sessions < 1 or self.n_items < 2 * self.n_triggers or self.n_triggers < 1:
            raise ValueError("need n_sessions >= 1, n_triggers >= 1 and n_items >= 2 * n_triggers")
        if self.mean_events < 1:
            raise ValueError("mean_events must be at least 1")
        for name in ("trigger_rate", "cart_rate", "purchase_rate", "signal_strength",
                     "post_purchase_views"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")


@dataclass(frozen=True, eq=False)
class TypedSessionTruth:
    """What :func:`generate_typed_sessions` planted: ``partner[x]`` for trigger x (−1 for other
    items), and per session the trigger whose cart decided its purchase (−1: none)."""

    partner: np.ndarray           # int64 [n_items]
    deciding_trigger: np.ndarray  # int64 [n_sessions]


def generate_typed_sessions(config: TypedSessionConfig = TypedSessionConfig()
                            ) -> tuple[Interactions, TypedSessionTruth]:
    """A typed event log of anonymous sessions.

    Returns
    -------
    Interactions
        One pseudo-user per session (``user == session``), ``session`` ids, integer-second
        ``timestamp`` (sessions start in id order, one event a second), ``rating`` = the event
        type code (:data:`EVENT_TYPES`: 0 view, 1 cart, 2 purchase); rows in time order.
    TypedSessionTruth
    """
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    items = rng.permutation(cfg.n_items)
    triggers, partners = items[:cfg.n_triggers], items[cfg.n_triggers:2 * cfg.n_triggers]
    partner = np.full(cfg.n_items, -1, np.int64)
    partner[triggers] = partners
    popular = zipf_weights(cfg.n_items, cfg.popularity_skew)
    popular = popular[np.argsort(rng.permutation(cfg.n_items))]

    n_events = 1 + rng.poisson(cfg.mean_events - 1, cfg.n_sessions)
    total = int(n_events.sum())
    session_of = np.repeat(np.arange(cfg.n_sessions), n_events)
    about_trigger = rng.random(total) < cfg.trigger_rate
    item = np.where(about_trigger, triggers[rng.integers(0, cfg.n_triggers, total)],
                    rng.choice(cfg.n_items, total, p=popular))
    kind = np.where(rng.random(total) < cfg.cart_rate, CART, VIEW)

    # the deciding trigger: the last carted trigger of each session (row order = time order)
    carted = np.flatnonzero((kind == CART) & (partner[item] >= 0))
    deciding = np.full(cfg.n_sessions, -1, np.int64)
    deciding[session_of[carted]] = item[carted]                   # later rows overwrite earlier
    buys = rng.random(cfg.n_sessions) < cfg.purchase_rate
    follows = (deciding >= 0) & (rng.random(cfg.n_sessions) < cfg.signal_strength)
    bought = np.where(follows, partner[np.maximum(deciding, 0)],
                      rng.choice(cfg.n_items, cfg.n_sessions, p=popular))
    deciding = np.where(buys & follows, deciding, -1)
    n_after = np.where(buys & (rng.random(cfg.n_sessions) < cfg.post_purchase_views),
                       rng.integers(1, 3, cfg.n_sessions), 0)

    # rows: browsing events, then the purchase, then the post-purchase views, per session
    buyers = np.flatnonzero(buys)
    after = np.repeat(buyers, n_after[buyers])
    session = np.concatenate([session_of, buyers, after])
    item = np.concatenate([item, bought[buyers], bought[after]])
    kind = np.concatenate([kind, np.full(len(buyers), PURCHASE), np.full(len(after), VIEW)])
    stage = np.concatenate([np.zeros(total), np.ones(len(buyers)), np.full(len(after), 2)])
    order = np.lexsort((np.arange(len(session)), stage, session))
    session, item, kind = session[order], item[order], kind[order]
    position = np.arange(len(session)) - np.searchsorted(session, session)
    timestamp = EPOCH + session * 3600 + position
    data = Interactions(session.astype(np.int32), item.astype(np.int32),
                        IdMap.range(cfg.n_sessions), IdMap.range(cfg.n_items),
                        timestamp=timestamp.astype(np.float64), rating=kind.astype(np.float32),
                        session=session.astype(np.int64),
                        meta={"source": "synthetic-typed-sessions", "config": asdict(cfg)})
    return data, TypedSessionTruth(partner, deciding)
