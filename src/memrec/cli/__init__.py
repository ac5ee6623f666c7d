"""The ``memrec`` command line: parsing only, one function per verb, one module per verb group.

* :mod:`.train` — ``train``, ``evaluate``, ``recommend``, ``stream`` (runs of any registered model);
* :mod:`.data` — the ``data`` group: ``info``, ``sessions``, ``synth``, ``fetch``;
* :mod:`.misc` — ``models``, ``demo``;
* :mod:`.serve` — ``serve``, ``state rebuild``;
* :mod:`.tune` — ``tune`` (Optuna search, the ``tune`` extra), ``report`` (runs side by side).

Bad input (a malformed file, an unknown id, model or config key, a missing path, a corrupt
checkpoint) exits with status 2 and one line on stderr; ``--debug`` shows the traceback.
The console script is ``memrec.cli:main``; ``python -m memrec`` and ``python -m memrec.cli`` run
the same group.
"""

from __future__ import annotations

import shlex
import sys

import click

from ..errors import ConfigError, DataError

USER_ERRORS = (DataError, ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               FileExistsError, PermissionError)


def _usage_line(e: click.UsageError) -> str:
    """Click's usage error as one line: the problem, then where help is (click prints three)."""
    where = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
    return f"memrec: error: {e.format_message()}{where}"


class ErrorHandlingGroup(click.Group):
    """Turns user errors into one clean stderr line and exit status 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # the group's own options (``memrec --bogus``)
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            click.echo(_usage_line(e), err=True)
            raise click.exceptions.Exit(2) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a verb's bad option value, an unknown verb
            click.echo(_usage_line(e), err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            from ..distributed import launched_by_nproc
            if not launched_by_nproc():      # else the launching process says it, once
                click.echo(f"memrec: interrupted{_how_to_continue()}", err=True)
            ctx.exit(130)
        except USER_ERRORS as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = str(e) if not isinstance(e, OSError) else f"{e.filename}: {e.strerror}"
            click.echo(f"memrec: error: {_rank_prefix()}{message}", err=True)
            ctx.exit(2)


def _rank_prefix() -> str:
    """"rank N: " in the errors of a distributed job's ranks other than 0 (rank 0 speaks for it)."""
    from ..distributed import current
    rank = current().rank
    return f"rank {rank}: " if rank else ""


def _how_to_continue() -> str:
    """For an interrupted ``train``: the command that continues it (training checkpoints every
    epoch, so the run keeps its finished epochs)."""
    args = sys.argv[1:]
    if "train" not in args:
        return ""
    resume = args if "--resume" in args else args + ["--resume"]
    return "; continue the run with: memrec " + " ".join(shlex.quote(a) for a in resume)


@click.group(cls=ErrorHandlingGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="memrec")
@click.pass_context
def main(ctx, debug):
    """memrec: memory-network recommender systems."""
    ctx.obj = {"debug": debug}


# the verb modules define their commands; the group gathers them (they never import ``main``)
from . import data, misc, serve, train, tune  # noqa: E402

for _command in (train.train, train.evaluate, train.recommend, train.stream, data.data,
                 tune.tune, tune.report, misc.models, misc.demo, serve.serve, serve.state):
    main.add_command(_command)



def run() -> None:
    """The ``memrec`` command: the allocator set for long tensor work, then the CLI (tests call
    ``main`` in their own process and keep its defaults)."""
    from ..allocator import keep_freed_memory
    keep_freed_memory()
    main(prog_name="memrec")


__all__ = ["main", "run", "ErrorHandlingGroup", "USER_ERRORS"]
