"""Options several verbs share (the verb modules import them; this module imports no verb)."""

from __future__ import annotations

import click

#: ``--device`` of the verbs that run a saved model (``train`` and ``stream`` set train.device)
DEVICE_HELP = ("auto | cpu | cuda | cuda:N | mps: where the model runs (default auto: a CUDA GPU, "
               "else MPS, else the CPU).")


def device_option(help: str = DEVICE_HELP, default: str | None = "auto"):
    """``--device NAME``; the verb resolves it before any work (a device this machine lacks is
    a one-line error, exit 2)."""
    return click.option("--device", default=default, metavar="DEVICE", help=help)


__all__ = ["device_option", "DEVICE_HELP"]
