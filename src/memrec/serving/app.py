"""The HTTP API over a :class:`~memrec.serving.live.LiveModel` (FastAPI; ``memrec serve``).

======================================  =========================================================
``POST /v1/events``                     apply events (one, or ``{"events": [...]}``, all or
                                        nothing); ``200 {"applied": n}`` once durable
``GET /v1/users/{user}/recommendations`` top-k from the user's live memory (``k``, ``explain``,
                                        ``exclude_seen``)
``POST /v1/recommendations``            top-k for a history (anonymous, nothing stored)
``GET /v1/users/{user}/memory``         the user's memory as the model holds it
``DELETE /v1/users/{user}``             forget the user's events and state
``GET /v1/users``                       some known user ids (the web page's picker)
``GET /healthz``, ``GET /metrics``      liveness (model, checkpoint sha256, device); Prometheus text
``GET /``                               the web page (``static/index.html``)
======================================  =========================================================

Writes need ``Authorization: Bearer <MEMREC_TOKEN>`` when that variable is set (constant-time
comparison); with ``read_token`` reads need it too. Request bodies over ``max_body`` bytes are
refused (413). Bad input is a 4xx with a ``detail`` message; nothing is ever unpickled.

Endpoints are plain functions: FastAPI runs them in its thread pool, and the store serialises
the writes to one user (``store.py``).
"""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path

import torch
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ..checkpoint import load_model
from . import metrics
from .live import BadRequest, LiveModel, Recommendation, UnknownUser, checkpoint_digest
from .schemas import (Applied, Entry, EventsIn, Health, HistoryIn, Item, Memory, MemoryRow,
                      Recommendations)
from .backends import open_store
from .store import Event, StaleCheckpoint, store_errors

PAGE = Path(__file__).parent / "static" / "index.html"
#: the largest request body accepted, in bytes (a batch of 10,000 events fits)
MAX_BODY = 2 << 20


def default_store_url(run_dir: str | Path) -> str:
    return f"sqlite:///{Path(run_dir) / 'state.db'}"


def open_live(run_dir: str | Path, store_url: str | None = None,
              device: str | torch.device = "cpu") -> tuple[LiveModel, dict | None]:
    """The run's model (checked first) on ``device`` over the store at ``store_url`` (default:
    the run's SQLite file); when the store's states were written by another checkpoint, replay
    its log through this one first, and return what the rebuild did (None: nothing to do)."""
    saved = load_model(run_dir, device)
    store = open_store(store_url or default_store_url(run_dir))
    live = LiveModel(saved, store, checkpoint_digest(run_dir))
    stored = store.checkpoint()
    report = live.rebuild() if stored not in (None, live.checkpoint) else None
    return live, report


def create_app(run_dir: str | Path, store_url: str | None = None, *, token: str | None = None,
               read_token: bool = False, max_body: int = MAX_BODY,
               device: str | torch.device = "cpu") -> FastAPI:
    """The service for a run folder, its model on ``device``. ``token`` (default:
    ``$MEMREC_TOKEN``; empty: none) guards writes, and reads too with ``read_token``."""
    token = (os.environ.get("MEMREC_TOKEN") if token is None else token) or None   # "": none
    live, _ = open_live(run_dir, store_url, device)
    app = FastAPI(title="memrec", version="1", summary=f"live memory recommendations: {live.name}")
    require_write = _bearer(token)
    require_read = _bearer(token if read_token else None)
    _install_middleware(app, max_body)
    _routes(app, live, require_write, require_read)
    return app


def create_app_from_env() -> FastAPI:
    """For ``uvicorn --factory`` with several workers: settings from ``MEMREC_SERVE_*``."""
    return create_app(os.environ["MEMREC_SERVE_RUN"], os.environ.get("MEMREC_SERVE_STORE") or None,
                      read_token=os.environ.get("MEMREC_SERVE_READ_TOKEN") == "1",
                      device=os.environ.get("MEMREC_SERVE_DEVICE") or "cpu")


def _bearer(token: str | None):
    """A dependency that checks ``Authorization: Bearer <token>`` (none when token is None)."""
    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    return check


def _install_middleware(app: FastAPI, max_body: int) -> None:
    @app.middleware("http")
    async def limit_and_measure(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            return JSONResponse({"detail": f"request body over {max_body} bytes"}, status_code=413)
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            # a chunked body of unknown length could be any size: ask for a declared one
            return JSONResponse({"detail": "a request body needs a Content-Length"}, status_code=411)
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "unmatched"), request.method, response.status_code,
                        time.perf_counter() - start)
        return response

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(UnknownUser)
    async def unknown_user(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StaleCheckpoint)
    async def stale(request, exc):
        metrics.STORE_ERRORS.inc()
        return JSONResponse({"detail": f"{exc}; restart the service or run `memrec state rebuild`"},
                            status_code=409)


def _recommendations(live: LiveModel, user: str | None, rec: Recommendation) -> Recommendations:
    explanations = rec.explanations or [None] * len(rec.items)
    return Recommendations(
        user=user, model=live.name, events_seen=rec.events_seen, cold_start=rec.cold_start,
        items=[Item(item=i, score=s, explanation=None if why is None else
                    [Entry(kind=e.kind, id=e.id, weight=e.weight) for e in why])
               for i, s, why in zip(rec.items, rec.scores, explanations)])


def _routes(app: FastAPI, live: LiveModel, require_write, require_read) -> None:
    @app.post("/v1/events", response_model=Applied, dependencies=[Depends(require_write)])
    def post_events(body: EventsIn) -> Applied:
        events = [Event(str(e.user), str(e.item), e.timestamp, e.type) for e in body.events]
        applied = _guarded(lambda: live.observe(events))
        metrics.EVENTS.inc(applied)
        return Applied(applied=applied)

    @app.get("/v1/users/{user}/recommendations", response_model=Recommendations,
             dependencies=[Depends(require_read)])
    def get_recommendations(user: str, k: int = 10, explain: bool = False,
                            exclude_seen: bool = True) -> Recommendations:
        rec = _guarded(lambda: live.recommend(user, k, explain=explain, exclude_seen=exclude_seen))
        return _recommendations(live, user, rec)

    @app.post("/v1/recommendations", response_model=Recommendations, dependencies=[Depends(require_read)])
    def post_recommendations(body: HistoryIn) -> Recommendations:
        rec = live.recommend_history([str(i) for i in body.history], body.k, explain=body.explain,
                                     exclude_seen=body.exclude_seen)
        return _recommendations(live, None, rec)

    @app.get("/v1/users/{user}/memory", response_model=Memory, dependencies=[Depends(require_read)])
    def get_memory(user: str) -> Memory:
        view = _guarded(lambda: live.memory(user))
        return Memory(user=user, model=live.name, known=view.known, events_seen=view.events_seen,
                      state=view.state, kind=view.kind, state_bytes=view.state_bytes,
                      rows=[MemoryRow(label=label, vector=vector) for label, vector in view.rows])

    @app.delete("/v1/users/{user}", dependencies=[Depends(require_write)])
    def delete_user(user: str) -> dict:
        return {"user": user, "forgotten": _guarded(lambda: live.forget(user))}

    @app.get("/v1/users", dependencies=[Depends(require_read)])
    def list_users(limit: int = Query(50, ge=1, le=1000)) -> dict:
        return {"users": live.known_users(limit)}

    @app.get("/healthz", response_model=Health)
    def health() -> Health:
        return Health(status="ok", model=live.name, checkpoint=live.checkpoint, device=str(live.device))

    @app.get("/metrics", dependencies=[Depends(require_read)])
    def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")


def _guarded(call):
    """Run a store operation; a failing store is a 503 (and counted), not a 500."""
    try:
        return call()
    except store_errors() as e:
        metrics.STORE_ERRORS.inc()
        raise HTTPException(503, f"state store unavailable: {e}") from None


__all__ = ["create_app", "create_app_from_env", "open_live", "default_store_url", "MAX_BODY"]
