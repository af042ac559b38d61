"""The ``asyncq`` command: run a worker, enqueue and inspect jobs, read queue statistics, handle dead letters.

Each command is a thin shell over the public API (``App``, ``Job``, ``run_worker``) and ``asyncq.admin``. An
error that is the user's to fix (Redis down, unknown job, bad input) prints one red line saying what to do and
exits non-zero, without a traceback: 1 for a runtime problem, 2 for bad input.
"""

from __future__ import annotations

from asyncq.cli import check as check
from asyncq.cli import commands as commands  # registers the commands
from asyncq.cli import dashboard as dashboard
from asyncq.cli import dlq as dlq
from asyncq.cli import migrate as migrate
from asyncq.cli import ops as ops
from asyncq.cli import tenant as tenant
from asyncq.cli._common import cli as cli


def main() -> None:
    """Entry point of the ``asyncq`` script and ``python -m asyncq``."""
    cli(prog_name="asyncq")


__all__ = ["cli", "main"]
