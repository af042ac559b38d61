"""The test suite's own Redis (root conftest.py): unless ASYNCQ_TEST_REDIS was set by the user, every URL the
tests hand out points at the private redis-server this run started, never at 127.0.0.1:6379."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from .conftest import REDIS_BASE, flushed_url, redis_url

ROOT = Path(__file__).resolve().parent.parent
PRIVATE_PID = os.environ.get("ASYNCQ_TEST_REDIS_PRIVATE_PID")
private = pytest.mark.skipif(PRIVATE_PID is None, reason="ASYNCQ_TEST_REDIS names the user's own server")


def test_every_url_the_tests_use_is_on_the_test_server() -> None:
    assert os.environ["ASYNCQ_TEST_REDIS"] == REDIS_BASE
    assert redis_url(5) == f"{REDIS_BASE}/5"
    assert os.environ["COMPAT_REDIS_URL"] == f"{REDIS_BASE}/8"
    assert os.environ["ASYNCQ_REDIS_URL"] == f"{REDIS_BASE}/0"  # the library's default, for code that omits it
    from compat.proj.runtime import REDIS_URL

    assert f"{REDIS_BASE}/8" == REDIS_URL


@private
def test_the_base_url_is_the_private_server_this_run_started() -> None:
    assert PRIVATE_PID is not None
    port = urlsplit(REDIS_BASE).port
    assert urlsplit(REDIS_BASE).hostname == "127.0.0.1" and port not in (None, 6379)
    client = redis.Redis.from_url(flushed_url(12))
    try:
        info = client.info("server")
        assert info["process_id"] == int(PRIVATE_PID) and info["tcp_port"] == port
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
        directory = client.config_get("dir")["dir"]
        assert Path(directory).name.startswith("asyncq-redis-") and not Path(directory).is_relative_to(ROOT)
    finally:
        client.close()


def open_files(fd_dir: Path) -> list[str]:
    """What each descriptor in /proc/PID/fd points at (a descriptor closed meanwhile is skipped)."""
    out = []
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):
            out.append(os.readlink(fd_dir / fd))
    return out


@private
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_the_private_server_holds_no_descriptor_of_ours() -> None:
    """Started with close_fds: it keeps no lock, pipe or file of whoever ran the tests (flock, CI's log pipe)."""
    assert PRIVATE_PID is not None
    fd_dir = Path(f"/proc/{PRIVATE_PID}/fd")
    try:
        targets = open_files(fd_dir)
    except PermissionError:
        pytest.skip("cannot read another process's /proc/PID/fd here")
    client = redis.Redis.from_url(redis_url(12))
    directory = client.config_get("dir")["dir"]
    client.close()
    files = [t for t in targets if t.startswith("/") and t != "/dev/null" and not t.startswith(directory)]
    assert files == [], f"the private redis-server holds inherited files: {files}"
    # the same pipe, socket or file open in both was inherited from us (anonymous inodes all read the same)
    ours = {t for t in open_files(Path(f"/proc/{os.getpid()}/fd")) if t != "/dev/null" and "anon_inode" not in t}
    shared = sorted(set(targets) & ours)
    assert shared == [], f"the private redis-server shares descriptors with the test process: {shared}"


@private
def test_connecting_to_the_shared_redis_fails_loudly() -> None:
    """The root conftest's audit hook: a test reaching 127.0.0.1:6379 errors before anything is sent."""
    with socket.socket() as s, pytest.raises(RuntimeError, match="must never touch"):
        s.connect(("127.0.0.1", 6379))


def test_an_explicit_port_6379_needs_the_opt_in() -> None:
    """ASYNCQ_TEST_REDIS at port 6379 without ASYNCQ_TEST_REDIS_FLUSH_OK=1: pytest refuses before connecting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCQ_", "COMPAT_"))}
    env["ASYNCQ_TEST_REDIS"] = "redis://127.0.0.1:6379"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co", "tests/test_test_redis.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "ASYNCQ_TEST_REDIS_FLUSH_OK=1" in proc.stderr
