"""``KnowledgeGraph``: entities, relations, triples and the item → entity links, as indices.

Built on the raw reader :func:`memrec.data.readers.kg.load_kg` (RecBole ``.kg``/``.link`` atomic
files, or KGCN ``kg.txt`` + ``item_index2entity_id.txt``), which returns str frames. Here they
become dense indices:

* ``entities`` / ``relations`` — :class:`~memrec.data.interactions.IdMap` of raw entity ids
  (Freebase mids, KGCN integers) and relation names;
* ``triples`` — int64 [T, 3] of (head, relation, tail) indices, duplicates removed;
* ``link_items`` / ``link_entities`` — the raw item id of each link and its entity index.

Unlinked items are explicit: :meth:`KnowledgeGraph.item_entities` maps a dataset's items to
entity indices with **-1** for an item that has no link (or whose entity occurs in no triple:
such an entity would only ever have its random initial vector). Models decide what -1 means
(KSR: a zero entity vector and no knowledge write, see ``models/ksr.py``).

Relations KSR keeps as memory slots (:meth:`KnowledgeGraph.item_relations`). KSR's memory has
one slot per *attribute* of an item (genre, director, actor, …), keyed by the relation's TransE
vector, and the write e_i + r_a is "item i's value of attribute a". A KG may store an attribute
either way round: (film, genre, drama) or (drama, films_in_genre, film). The rule is blind to
the direction a KG chose; a relation qualifies by the items it touches on either side:

1. **orientation**: a relation's *item end* is its head when at least as many of its triples
   have a linked item at the head as at the tail, else its tail. A tail-item relation r is read
   as its inverse, (item, r⁻¹, attribute); TransE's vector for r⁻¹ is −r (e_a + r ≈ e_i is
   e_i − r ≈ e_a), so its slot key is −r and its name is ``r⁻¹``;
2. a linked item sits at the item end of at least ``min_head_share`` (default ½) of the
   relation's triples (the head share, once r⁻¹ is read forward): mostly entity–entity
   relations stay out;
3. it touches at least ``min_item_share`` (default 1 %, and at least one) of the linked items
   (KSR's memory has a handful of slots, ~8 in the authors' sample input; a relation seen on
   three items is noise);
4. a relation read as r⁻¹ whose (item, entity) pairs are, for at least 90 %, those of a relation
   already kept is the same fact stored in both directions (Freebase's ``film.film.genre`` and
   ``film.film_genre.films_in_this_genre``): it adds no slot. Relations stored item-first are
   all kept, as before this rule knew about directions (lastfm-kg has two award-nomination
   relations with the same pairs; both stay).

Item → item relations (``film.film.sequel``) pass the rule: their far end is still an entity
that TransE places, which is all the write needs. Triples between non-item entities (a
director's birthplace, two hops from the film) make no slot, but TransE trains on *every*
triple: they shape the entity vectors. When nothing qualifies,
:meth:`KnowledgeGraph.require_item_relations` says what the graph holds and what relaxes the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .interactions import IdMap
from ..errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class KnowledgeGraph:
    """A knowledge graph over dense entity and relation indices, with item links.

    Shapes
    ------
    triples : int64 [T, 3] — (head, relation, tail)
    link_items : [N] raw item ids (int64 or str, as :class:`IdMap` keeps ids)
    link_entities : int64 [N] — entity index of each linked item
    """

    entities: IdMap
    relations: IdMap
    triples: np.ndarray
    link_items: np.ndarray
    link_entities: np.ndarray
    #: links dropped while building, by reason (``"duplicate item"``, ``"entity not in graph"``)
    dropped_links: dict

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_frames(cls, triples: pd.DataFrame, link: pd.DataFrame | None = None) -> "KnowledgeGraph":
        """From ``head, relation, tail`` (str) and ``item, entity`` frames (the reader's output).

        Duplicate triples are kept once. An item linked twice keeps its first link; a link to an
        entity that appears in no triple is dropped. Both are counted in ``dropped_links``.
        """
        if not {"head", "relation", "tail"} <= set(triples.columns):
            raise DataError("knowledge graph triples need head, relation and tail columns")
        if triples.empty:
            raise DataError("knowledge graph has no triples")
        triples = triples[["head", "relation", "tail"]].astype(str).drop_duplicates()
        entity_codes, entity_ids = pd.factorize(pd.concat([triples["head"], triples["tail"]]),
                                                sort=False)
        relation_codes, relation_ids = pd.factorize(triples["relation"], sort=False)
        T = len(triples)
        index = np.stack([entity_codes[:T], relation_codes, entity_codes[T:]], axis=1).astype(np.int64)
        entities = IdMap(np.asarray(entity_ids, dtype=str))
        relations = IdMap(np.asarray(relation_ids, dtype=str))
        dropped = {"duplicate item": 0, "entity not in graph": 0}
        items = np.zeros(0, dtype=np.int64)
        linked = np.zeros(0, dtype=np.int64)
        if link is not None and len(link):
            first = ~link["item"].duplicated(keep="first").to_numpy()
            dropped["duplicate item"] = int((~first).sum())
            link = link[first]
            entity = pd.Index(entities.raw).get_indexer(link["entity"].astype(str).to_numpy())
            dropped["entity not in graph"] = int((entity < 0).sum())
            keep = entity >= 0
            items = np.asarray(link["item"].to_numpy()[keep])
            items = items.astype(np.int64) if items.dtype.kind in "iu" else items.astype(str)
            linked = entity[keep].astype(np.int64)
        return cls(entities, relations, index, items, linked, dropped)

    @classmethod
    def load(cls, path: str | Path) -> "KnowledgeGraph":
        """Read a ``.kg`` file, a ``kg.txt`` file, or a folder holding either (with its links)."""
        from .readers.kg import load_kg
        triples, link = load_kg(path)
        return cls.from_frames(triples, link)

    # -- sizes --------------------------------------------------------------------------------
    @property
    def n_entities(self) -> int:
        return len(self.entities)

    @property
    def n_relations(self) -> int:
        return len(self.relations)

    def __len__(self) -> int:
        return len(self.triples)

    # -- items --------------------------------------------------------------------------------
    def item_entities(self, items: IdMap) -> np.ndarray:
        """Entity index of every item of a dataset's item map, **-1 where unlinked**: int64 [n_items]."""
        if len(self.link_items) == 0:
            return np.full(len(items), -1, dtype=np.int64)
        raw = items.raw
        links = self.link_items
        if raw.dtype.kind != links.dtype.kind:   # int item ids in one file, str in the other
            raw, links = raw.astype(str), links.astype(str)
        position = pd.Index(links).get_indexer(raw)
        return np.where(position >= 0, self.link_entities[np.maximum(position, 0)], -1).astype(np.int64)

    def item_entity_mask(self) -> np.ndarray:
        """bool [n_entities]: entities some item links to."""
        mask = np.zeros(self.n_entities, dtype=bool)
        mask[self.link_entities] = True
        return mask

    def relation_profile(self) -> "RelationProfile":
        """How each relation touches the linked items (the counts the slot rule reads)."""
        is_item = self.item_entity_mask()
        heads, rels, tails = self.triples[:, 0], self.triples[:, 1], self.triples[:, 2]
        R, E = self.n_relations, self.n_entities

        def distinct_items(ends: np.ndarray) -> np.ndarray:
            at_item = is_item[ends]                  # unique (relation, item entity) pairs
            return np.bincount(np.unique(rels[at_item] * E + ends[at_item]) // E, minlength=R)

        return RelationProfile(triples=np.bincount(rels, minlength=R),
                               item_heads=np.bincount(rels[is_item[heads]], minlength=R),
                               item_tails=np.bincount(rels[is_item[tails]], minlength=R),
                               items_at_head=distinct_items(heads), items_at_tail=distinct_items(tails),
                               touching=int((is_item[heads] | is_item[tails]).sum()))

    def item_relations(self, min_head_share: float = 0.5, min_item_share: float = 0.01) -> "ItemRelations":
        """The relations that link items to attributes, either way round (KSR's memory slots),
        in relation order; empty, with the reason, when none qualifies. See the module
        docstring for the rule."""
        if len(self.link_entities) == 0:
            return ItemRelations.none(self._why_unlinked())
        profile = self.relation_profile()
        min_items = max(1.0, min_item_share * len(self.link_entities))
        qualified = ((profile.item_end_triples >= min_head_share * profile.triples)
                     & (profile.items_touched >= min_items))
        kept: dict[int, np.ndarray] = {}              # relation → its oriented pairs
        # relations stored item-first are kept first; an inverse one that repeats one of them adds nothing
        for r in [*np.flatnonzero(qualified & ~profile.inverse), *np.flatnonzero(qualified & profile.inverse)]:
            pairs = self._oriented_pairs(int(r), bool(profile.inverse[r]))
            if not (profile.inverse[r] and _repeats_one_of(pairs, kept.values())):
                kept[int(r)] = pairs
        if not kept:
            return ItemRelations.none(self._why_no_slots(profile, min_head_share, min_item_share, min_items))
        index = np.sort(np.fromiter(kept, dtype=np.int64))
        return ItemRelations(index, profile.inverse[index].copy())

    def require_item_relations(self, min_head_share: float = 0.5, min_item_share: float = 0.01) -> "ItemRelations":
        """:meth:`item_relations`, or a :class:`DataError` saying why the graph gives KSR no slot."""
        slots = self.item_relations(min_head_share, min_item_share)
        if len(slots) == 0:
            raise DataError(slots.why_none)
        return slots

    def _oriented_pairs(self, relation: int, inverse: bool) -> np.ndarray:
        """(item end, other end) keys of a relation's triples, item end first: int64 [n]."""
        rows = self.triples[self.triples[:, 1] == relation]
        item_end, other = (rows[:, 2], rows[:, 0]) if inverse else (rows[:, 0], rows[:, 2])
        return np.unique(item_end * self.n_entities + other)

    def _why_unlinked(self) -> str:
        names = _listed(self.relations.raw)
        dangling = self.dropped_links.get("entity not in graph", 0)
        links = (f"its {dangling:,} item links name entities that occur in no triple"
                 if dangling else "it has no item links (no .link / item_index2entity_id.txt file)")
        return (f"the knowledge graph gives KSR no memory slot: no item is linked to one of its "
                f"entities ({links}); its {len(self):,} triples over {self.n_relations} relations "
                f"({names}) are all between other entities, so none is an item's attribute. Check "
                f"that the links name entities of this graph, or set model.kg = \"none\" for KSR "
                f"without knowledge (the ablation)")

    def _why_no_slots(self, profile: "RelationProfile", min_head_share: float, min_item_share: float,
                      min_items: float) -> str:
        touching = profile.touching
        closest = np.argsort(-profile.items_touched, kind="stable")[:3]
        shares = profile.item_end_triples / np.maximum(profile.triples, 1)
        described = "; ".join(f"{self.relations.raw[r]}{INVERSE_MARK if profile.inverse[r] else ''}: "
                              f"{profile.items_touched[r]:,} items, {shares[r]:.0%} of its triples"
                              for r in closest if profile.items_touched[r] > 0) or "none touches an item"
        return (f"the knowledge graph gives KSR no memory slot: {touching:,} of its {len(self):,} "
                f"triples ({touching / len(self):.1%}) touch one of the {len(self.link_entities):,} "
                f"linked items, and none of its {self.n_relations} relations has a linked item at one "
                f"end of ≥ {min_head_share:.0%} of its triples (data.min_head_share) while touching "
                f"≥ {math.ceil(min_items)} items (data.min_item_share = {min_item_share:g}); closest: "
                f"{described}. Lower data.min_item_share or data.min_head_share, or set "
                f"model.kg = \"none\" for KSR without knowledge (the ablation)")

    def describe(self) -> dict:
        return {"entities": self.n_entities, "relations": self.n_relations, "triples": len(self),
                "linked items": len(self.link_items), "dropped links": dict(self.dropped_links)}



#: a relation read as r⁻¹ adds no slot when this share of its pairs already belongs to a kept one
DUPLICATE_PAIR_SHARE = 0.9
#: the mark of a relation read in the inverse direction (its slot key is −r)
INVERSE_MARK = "⁻¹"


def _repeats_one_of(pairs: np.ndarray, kept) -> bool:
    """Whether ≥ :data:`DUPLICATE_PAIR_SHARE` of ``pairs`` are the pairs of one kept relation."""
    return any(np.isin(pairs, other).mean() >= DUPLICATE_PAIR_SHARE for other in kept)


def _listed(names, limit: int = 6) -> str:
    """``a, b, c`` or ``a, b, … (12 in all)``: names for a one-line message."""
    names = [str(n) for n in names]
    return ", ".join(names) if len(names) <= limit else ", ".join(names[:limit]) + f", … ({len(names)} in all)"


@dataclass(frozen=True)
class RelationProfile:
    """Per relation, arrays [n_relations]: its triples, those with a linked item at the head /
    tail, and the distinct linked items at each end; ``touching``: triples touching an item."""

    triples: np.ndarray
    item_heads: np.ndarray
    item_tails: np.ndarray
    items_at_head: np.ndarray
    items_at_tail: np.ndarray
    touching: int

    @property
    def inverse(self) -> np.ndarray:
        """bool [R]: items sit at the tail more often than at the head (read as r⁻¹)."""
        return self.item_tails > self.item_heads

    @property
    def item_end_triples(self) -> np.ndarray:
        """Triples with a linked item at the relation's item end."""
        return np.where(self.inverse, self.item_tails, self.item_heads)

    @property
    def items_touched(self) -> np.ndarray:
        """Distinct linked items at the relation's item end."""
        return np.where(self.inverse, self.items_at_tail, self.items_at_head)


@dataclass(frozen=True)
class ItemRelations:
    """The relations KSR keeps as memory slots and the direction each is read in.

    Shapes
    ------
    index : int64 [S] — relation indices, in relation order
    inverse : bool [S] — stored attribute → item, read as (item, r⁻¹, attribute): key −r
    """

    index: np.ndarray
    inverse: np.ndarray
    #: why there is no slot (a one-line explanation); empty when there are slots
    why_none: str = ""

    @classmethod
    def none(cls, why: str) -> "ItemRelations":
        return cls(np.zeros(0, np.int64), np.zeros(0, bool), why)

    def __len__(self) -> int:
        return len(self.index)

    def names(self, relations: IdMap) -> list[str]:
        """Slot names: the relation's name, with ``⁻¹`` where it is read backwards."""
        return [f"{name}{INVERSE_MARK}" if inverse else str(name)
                for name, inverse in zip(relations.raw[self.index], self.inverse)]

    def signs(self) -> np.ndarray:
        """float32 [S]: +1, or −1 where the slot reads r⁻¹ (TransE's vector for r⁻¹ is −r)."""
        return np.where(self.inverse, -1.0, 1.0).astype(np.float32)


def split_triples(triples: np.ndarray, n_entities: int, n_relations: int, *, test_frac: float,
                  valid_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random (train, valid, test) triples. A held-out triple whose head, tail or relation does
    not occur in the training triples moves to train (nothing could place it); one pass suffices,
    since moving a triple only adds to what train covers.

    Shapes
    ------
    triples : int64 [T, 3] → three int64 [·, 3] arrays whose lengths sum to T
    """
    if min(test_frac, valid_frac) < 0 or test_frac + valid_frac >= 1:
        raise ConfigError(f"data.test_frac and data.valid_frac must be >= 0 with a sum below 1, "
                          f"got {test_frac} and {valid_frac}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(triples))
    n_test, n_valid = int(round(test_frac * len(triples))), int(round(valid_frac * len(triples)))
    part = np.zeros(len(triples), np.int8)
    part[order[:n_test]] = 2
    part[order[n_test:n_test + n_valid]] = 1
    train = triples[part == 0]
    seen_entity = np.zeros(n_entities, bool)
    seen_entity[train[:, 0]] = seen_entity[train[:, 2]] = True
    seen_relation = np.zeros(n_relations, bool)
    seen_relation[train[:, 1]] = True
    covered = seen_entity[triples[:, 0]] & seen_entity[triples[:, 2]] & seen_relation[triples[:, 1]]
    part[~covered] = 0
    return triples[part == 0], triples[part == 1], triples[part == 2]


__all__ = ["KnowledgeGraph", "ItemRelations", "RelationProfile", "split_triples", "INVERSE_MARK"]
