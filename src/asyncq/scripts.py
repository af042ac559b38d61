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


def _read(name: str) -> str:
    return resources.files("asyncq").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script named {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    source = _read(name)
    return _read("_owner") + source if name in OWNER_CHECKED else source


class Scripts:
    """The scripts registered on one client; attribute access gives the callable Script."""

    def __init__(self, client: Any) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_scripts"][name]
        except KeyError:
            raise AttributeError(name) from None
