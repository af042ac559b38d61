"""Mirror of ``celery.utils.nodenames``: Celery's worker node names (``name@host``).

An asyncq worker started with a name (``ASYNCQ_WORKER_NAME``, what the test worker and ``-n`` set) reports it as
its id, so ``app.control.inspect()`` answers are keyed by the node name Celery code expects.
"""

from __future__ import annotations

import os
import socket

#: the name part of a node name when none is given (Celery's)
DEFAULT_NAME = "celery"
NODENAME_SEP = "@"


def gethostname() -> str:
    return socket.gethostname()


def nodename(name: str, hostname: str) -> str:
    """``name@hostname``."""
    return f"{name}{NODENAME_SEP}{hostname}"


def nodesplit(name: str) -> tuple[str | None, str]:
    """``"name@host"`` -> ``("name", "host")``; a name without ``@`` is a host name alone."""
    head, sep, tail = name.partition(NODENAME_SEP)
    return (head, tail) if sep else (None, head)


def anon_nodename(hostname: str | None = None, prefix: str = "gen") -> str:
    """A node name unique to this process: ``gen<pid>@<host>`` (Celery's name for a worker started without
    one, e.g. the test worker)."""
    return nodename(f"{prefix}{os.getpid()}", hostname or gethostname())


def default_nodename(hostname: str | None = None) -> str:
    """``hostname`` completed to a node name: ``celery@<host>`` when none (or no ``@``) is given."""
    name, host = nodesplit(hostname or "")
    return nodename(name or DEFAULT_NAME, host or gethostname())


__all__ = ["anon_nodename", "default_nodename", "gethostname", "nodename", "nodesplit"]
