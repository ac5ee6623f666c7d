"""Generated knowledge-graph datasets for the KSR / TransE / reader tests (no downloads).

* :func:`write_multihop` — a RecBole folder (``films.inter`` / ``.kg`` / ``.link``) whose graph
  is laid out the way RippleNet / KGCN expand one: genres stored **attribute → item**
  (``genre.films``: genre → film), directors item → attribute (``film.director``), triples two
  hops out between non-item entities (a director's birthplace, its country, a genre's parent),
  films that are no items, and items without a link. KSR's slots: ``genre.films⁻¹`` (read
  backwards, key −r) and ``film.director``.
  ``entity_only=True``: the same folder with only the entity–entity triples (no slot possible).
* :func:`write_ripplenet` — the preprocessed files of RippleNet / KGCN / KGNN-LS / CKAN:
  ``ratings_final.txt`` (user, item, label 1 / 0 = sampled negative) and ``kg_final.txt``
  (integer head, relation, tail), item ids = the first entity ids.

Users have a planted taste (one genre each) so a model has something to learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_FILMS, N_GENRES, N_DIRECTORS = 30, 3, 5
FIRST_ITEM = 100                      # films f0..f29 are items 100..129
UNLINKED_ITEMS = (130, 131, 132)      # items with no link: no entity, no memory write
SLOTS = ["genre.films⁻¹", "film.director"]


def multihop_triples(entity_only: bool = False, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    director = rng.integers(0, N_DIRECTORS, N_FILMS)
    triples = []
    if not entity_only:
        triples += [(f"g{f % N_GENRES}", "genre.films", f"f{f}") for f in range(N_FILMS)]   # attribute → item
        triples += [(f"f{f}", "film.director", f"d{director[f]}") for f in range(N_FILMS)]
        triples += [(f"x{k}", "film.director", f"d{k % N_DIRECTORS}") for k in range(8)]   # films that are no items
    triples += [(f"d{d}", "person.born_in", f"c{d % 3}") for d in range(N_DIRECTORS)]      # two hops out
    triples += [(f"c{c}", "location.country", f"n{c % 2}") for c in range(3)]
    triples += [(f"g{g}", "genre.parent", "root") for g in range(N_GENRES)]
    return triples


def write_multihop(folder: Path, *, entity_only: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    triples = multihop_triples(entity_only, seed)
    (folder / "films.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n"
                                     + "".join(f"{h}\t{r}\t{t}\n" for h, r, t in triples))
    (folder / "films.link").write_text("item_id:token\tentity_id:token\n"
                                       + "".join(f"{FIRST_ITEM + f}\tf{f}\n" for f in range(N_FILMS)))
    rows = []
    for user in range(40):
        liked = [f for f in range(N_FILMS) if f % N_GENRES == user % N_GENRES]
        films = [FIRST_ITEM + f for f in rng.choice(liked, 6, replace=False)]
        films.insert(3, int(rng.choice(UNLINKED_ITEMS)))
        rows += [f"{user}\t{item}\t{1000 + 10 * t}\n" for t, item in enumerate(films)]
    (folder / "films.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(rows))
    return folder


# -- RippleNet / KGCN preprocessed files ----------------------------------------------------------
RIPPLE_ITEMS = 20                     # items 0..19 = entities 0..19; 18 and 19 are in no triple
RIPPLE_GENRES = (20, 21, 22)          # relation 0: genre → item (attribute → item)
RIPPLE_DIRECTORS = (23, 24, 25, 26)   # relation 1: item → director
# relation 2: director → city (27, 28); relation 3: city → country 29 (entity–entity)


def ripplenet_triples() -> list[tuple[int, int, int]]:
    linked = range(RIPPLE_ITEMS - 2)
    triples = [(RIPPLE_GENRES[i % 3], 0, i) for i in linked]
    triples += [(i, 1, RIPPLE_DIRECTORS[i % 4]) for i in linked]
    triples += [(d, 2, 27 + d % 2) for d in RIPPLE_DIRECTORS]
    triples += [(27, 3, 29), (28, 3, 29)]
    return triples


def write_ripplenet(folder: Path, *, seed: int = 0, labels=None) -> Path:
    """``ratings_final.txt`` with one label-0 row per label-1 row (RippleNet's sampling) and
    ``kg_final.txt``. ``labels``: a list of rows to write instead (tests of bad labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = labels
    if rows is None:
        rows = []
        for user in range(30):
            liked = [i for i in range(RIPPLE_ITEMS) if i % 3 == user % 3]
            positives = rng.choice(liked, 5, replace=False)
            negatives = rng.choice([i for i in range(RIPPLE_ITEMS) if i % 3 != user % 3], 5, replace=False)
            rows += [(user, int(i), 1) for i in positives] + [(user, int(i), 0) for i in negatives]
    (folder / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{y}\n" for u, i, y in rows))
    (folder / "kg_final.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in ripplenet_triples()))
    return folder
