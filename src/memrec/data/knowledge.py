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
vector, and the write e_i + r_a is "item i's value of attribute a". That only makes sense for
relations that go **from an item to an attribute entity**. KB dumps store both directions
(Freebase ``film.film.genre`` and its inverse ``film.film_genre.films_in_this_genre``); the
inverse direction (attribute → item) would ask TransE for the *item* reached from a genre, so it
is dropped. The rule (documented in ``docs/models/ksr.md``):

1. the relation's head is a linked item entity in at least ``min_head_share`` (default ½) of its
   triples, and
2. it touches at least ``min_item_share`` (default 1 %) of the linked items (KSR's memory has
   a handful of slots, ~8 in the authors' sample input; a relation seen on three items is noise).

Item → item relations (``film.film.sequel``) pass the rule: their tail is still an entity that
TransE places, which is all the write needs. TransE itself trains on *every* triple.
"""

from __future__ import annotations

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

    def item_relations(self, min_head_share: float = 0.5, min_item_share: float = 0.01) -> np.ndarray:
        """Indices of the relations that link items to attributes (KSR's memory slots), in
        relation order. See the module docstring for the rule."""
        if len(self.link_entities) == 0:
            raise DataError("the knowledge graph has no item links; KSR needs item → entity links")
        is_item = self.item_entity_mask()
        heads, rels = self.triples[:, 0], self.triples[:, 1]
        from_item = is_item[heads]
        total = np.bincount(rels, minlength=self.n_relations)
        item_headed = np.bincount(rels, weights=from_item, minlength=self.n_relations)
        # distinct items per relation: unique (relation, head) pairs among item-headed triples
        pairs = np.unique(rels[from_item] * self.n_entities + heads[from_item])
        items_touched = np.bincount(pairs // self.n_entities, minlength=self.n_relations)
        keep = (item_headed >= min_head_share * total) & (
            items_touched >= max(1.0, min_item_share * len(self.link_entities)))
        return np.flatnonzero(keep)

    def describe(self) -> dict:
        return {"entities": self.n_entities, "relations": self.n_relations, "triples": len(self),
                "linked items": len(self.link_items), "dropped links": dict(self.dropped_links)}



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


__all__ = ["KnowledgeGraph", "split_triples"]
