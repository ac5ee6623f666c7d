"""``python -m memrec.cli``: the ``memrec`` command line."""

from . import main

main(prog_name="memrec")
