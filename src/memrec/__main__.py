"""``python -m memrec``: the ``memrec`` command line."""

from .cli import run

run()
