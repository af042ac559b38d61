"""A private redis-server for fault runs and fault tests: its own free port and temp directory, never 6379.

Used by ``benchmarks/faults.py`` and ``tests/test_faults.py``::

    with RedisProc(appendonly=True) as server:     # AOF on, fsync every second
        url = server.url()
        server.shutdown()                          # graceful: SHUTDOWN (the AOF is flushed), process gone
        server.start()                             # again, same port and directory: the data comes back
        server.pause(); server.resume()            # SIGSTOP / SIGCONT: commands hang, then answer

Leaving the ``with`` block (also on an exception) kills the server (resuming it first if paused) and deletes
its directory. The process is started with ``close_fds`` and its own session, so a Ctrl-C meant for the
caller does not stop it behind the caller's back; the caller's cleanup does.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


def find_redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not on PATH (apt install redis-server / brew install redis)")
    return exe


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    """PING over a raw socket: True once the server answers (and has loaded its AOF)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProc:
    """One redis-server child process. ``appendonly=True``: AOF with ``appendfsync everysec``."""

    def __init__(self, *, appendonly: bool = False, name: str = "asyncq-fault") -> None:
        self.appendonly = appendonly
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start (or start again on the same port and directory) and wait until it answers PING."""
        if self.running:
            return
        cmd = [
            find_redis_server(), "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir),
            "--save", "", "--logfile", "redis.log", "--daemonize", "no",
        ]
        if self.appendonly:
            cmd += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            cmd += ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True,
        )
        self.paused = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start: {self.log_tail()}")
            if _pings(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout} s")

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop gracefully: the SHUTDOWN command (AOF fsynced, clients disconnected), then wait for the exit."""
        if not self.running:
            return
        self.resume()
        try:
            with socket.create_connection((HOST, self.port), timeout=5) as s:
                s.sendall(b"SHUTDOWN\r\n")
                with contextlib.suppress(OSError):
                    s.recv(64)  # the server closes the connection: no reply on success
        except OSError:
            pass
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"redis-server on port {self.port} did not shut down within {timeout} s") from None
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections and accepts new ones, but answers nothing."""
        if self.running and not self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)
        self.paused = False

    def close(self) -> None:
        """Kill the server and delete its directory."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 3) -> str:
        with contextlib.suppress(OSError):
            text = (self.dir / "redis.log").read_text(errors="replace").strip().splitlines()
            return " | ".join(line.strip() for line in text[-lines:])
        return ""

    def __enter__(self) -> RedisProc:
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
