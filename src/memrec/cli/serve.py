"""``serve`` (the HTTP service over a run) and the ``state`` group (``state rebuild``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from .options import device_option

STORE_HELP = "State store URL: sqlite:///PATH (default RUN_DIR/state.db) or redis://HOST:PORT/DB."


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--store", "store_url", default=None, help=STORE_HELP)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes (they share the store).")
@click.option("--read-token", is_flag=True,
              help="Reads need the bearer token too (writes need it whenever MEMREC_TOKEN is set).")
@device_option()
def serve(run_dir, host, port, store_url, workers, read_token, device):
    """Serve RUN_DIR over HTTP with live memory: POST /v1/events writes each user's memory,
    GET /v1/users/USER/recommendations reads it; the web page is at /, the API at /docs."""
    import uvicorn

    from ..devices import resolve_device
    from ..serving.app import create_app, default_store_url, open_live
    if read_token and not os.environ.get("MEMREC_TOKEN"):
        raise click.UsageError("--read-token needs the token in MEMREC_TOKEN")
    device = resolve_device(device, "--device")
    store_url = store_url or default_store_url(run_dir)
    live, report = open_live(run_dir, store_url, device)     # a bad run or store fails here, once
    live.store.close()
    if report is not None:
        click.echo(f"store held another checkpoint's states: replayed {report['events']} events "
                   f"({report['skipped']} skipped: items not in this catalogue)", err=True)
    click.echo(f"serving {live.name} from {run_dir} ({live.device}) on http://{host}:{port} "
               f"(store {store_url})", err=True)
    if workers == 1:
        uvicorn.run(create_app(run_dir, store_url, read_token=read_token, device=device), host=host,
                    port=port, log_level="warning")
        return
    # each worker loads the model onto the device resolved here (cuda, cuda:1, mps or cpu)
    os.environ.update(MEMREC_SERVE_RUN=str(run_dir), MEMREC_SERVE_STORE=store_url,
                      MEMREC_SERVE_DEVICE=str(device),
                      MEMREC_SERVE_READ_TOKEN="1" if read_token else "0",
                      PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="memrec-metrics-"))
    uvicorn.run("memrec.serving.app:create_app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="warning")


@click.group()
def state():
    """The serving state store."""


@state.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--store", "store_url", default=None, help=STORE_HELP)
@device_option()
def rebuild(run_dir, store_url, device):
    """Replay the store's event log through RUN_DIR's checkpoint and replace every state (for a
    new checkpoint; `memrec serve` also does it at start when the checkpoint changed)."""
    from ..checkpoint import load_model
    from ..devices import resolve_device
    from ..serving.app import default_store_url
    from ..serving.backends import open_store
    from ..serving.live import LiveModel, checkpoint_digest
    saved = load_model(run_dir, resolve_device(device, "--device"))
    store = open_store(store_url or default_store_url(run_dir))
    try:
        report = LiveModel(saved, store, checkpoint_digest(run_dir)).rebuild()
    finally:
        store.close()
    click.echo(f"replayed {report['events']} events into {report['states']} states "
               f"({report['skipped']} skipped: items not in this catalogue)")
