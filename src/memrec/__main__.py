"""``python -m memrec``: the ``memrec`` command line."""

from .cli import main

main(prog_name="memrec")
