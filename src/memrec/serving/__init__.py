"""Serving a trained model with live memory: a read per request, a write per event.

* :mod:`.store` — the state store contract (event log + current state per user), the
  in-process store and :func:`~.store.open_store`; :mod:`.sqlite_store` (embedded default),
  :mod:`.redis_store` (several hosts);
* :mod:`.live` — :class:`~.live.LiveModel`: a trained model over a store — apply events,
  recommend, explain, show a memory, rebuild states for a new checkpoint;
* :mod:`.schemas`, :mod:`.app` — the HTTP API (FastAPI) and its web page (``static/``).
"""
