"""The Lua scripts, read once from ``lua/*.lua`` and registered per Redis client.

Each script is one atomic step of a job's life (enqueue, claim, renew, finish, requeue, dead-letter, abort,
dead-letter retry). Keeping them as files means they can be read, reviewed and tested as Lua, not as strings.
redis-py's Script object sends EVALSHA and reloads the script after a Redis restart (NOSCRIPT).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

SCRIPT_NAMES = (
    "abort", "claim", "dead_letter", "dlq_retry", "enqueue", "finish", "purge", "renew", "requeue",
    "celery_claim", "celery_restore", "celery_settle", "celery_store",
)


#: scripts that settle a claimed job start with the shared ownership check (lua/_owner.lua)
OWNER_CHECKED = frozenset({"dead_letter", "finish", "renew", "requeue"})

#: scripts that announce something (a wake-up, a result, an abort) with ``redis.call(PUBLISH, ...)``: ``PUBLISH``
#: is a local set by the line scripts.py puts first, 'PUBLISH' (classic pub/sub) or, on Redis Cluster >= 7,
#: 'SPUBLISH' (sharded pub/sub: the message stays on the shard's master and replicas, see broker_cluster.py)
PUBLISHING = frozenset({"abort", "dead_letter", "dlq_retry", "enqueue", "finish", "requeue"})
PUBLISH_COMMANDS = ("PUBLISH", "SPUBLISH")


def _read(name: str) -> str:
    return resources.files("asyncq").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str, publish: str = "PUBLISH") -> str:
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script named {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    if publish not in PUBLISH_COMMANDS:
        raise ValueError(f"publish must be one of {PUBLISH_COMMANDS}, got {publish!r}")
    source = _read(name)
    source = _read("_owner") + source if name in OWNER_CHECKED else source
    return f"local PUBLISH = '{publish}'\n" + source if name in PUBLISHING else source


class Scripts:
    """The scripts registered on one client; attribute access gives the callable Script. ``publish``: the
    command the scripts announce with (``PUBLISH``, or ``SPUBLISH`` for sharded pub/sub on a cluster)."""

    def __init__(self, client: Any, publish: str = "PUBLISH") -> None:
        self.publish = publish
        self._scripts = {name: client.register_script(script_source(name, publish)) for name in SCRIPT_NAMES}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_scripts"][name]
        except KeyError:
            raise AttributeError(name) from None
