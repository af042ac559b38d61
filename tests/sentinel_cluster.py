"""A private Redis Sentinel setup for tests and benchmarks/sentinel.py: one master, one replica
(``--replicaof``) and three ``redis-server --sentinel`` processes, each on a free port of 127.0.0.1, in one
temporary directory, never port 6379 or 26379::

    with SentinelCluster() as cluster:
        url = cluster.url(db=0)          # redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/asyncq-test/0
        cluster.failover()               # SENTINEL FAILOVER; returns once the Sentinels name the new master

Every process gets its own session and, on Linux, ``PR_SET_PDEATHSIG``, so a killed test run leaves none
behind; leaving the ``with`` block kills them all and deletes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from asyncq.embedded import _die_with_parent, find_redis_server, free_port

HOST = "127.0.0.1"
SERVICE = "asyncq-test"


def sentinel_supported(exe: str | None = None) -> bool:
    """Whether this redis-server runs in Sentinel mode (some builds leave it out)."""
    exe = exe or find_redis_server()
    proc = subprocess.run([exe, "--help"], capture_output=True, timeout=10, check=False)
    return b"--sentinel" in proc.stdout + proc.stderr


class SentinelCluster:
    def __init__(self, *, down_after_ms: int = 1000, failover_timeout_ms: int = 5000,
                 min_replicas_to_write: int = 0) -> None:
        self.exe = find_redis_server()
        #: the data servers' min-replicas-to-write (0: off, Redis's default)
        self.min_replicas_to_write = min_replicas_to_write
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.directory = Path(tempfile.mkdtemp(prefix="asyncq-sentinel-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.data_ports: list[int] = []
        self.sentinel_ports: list[int] = []

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = self.directory / f"{name}.log"
        proc = subprocess.Popen(
            [self.exe, *args, "--logfile", str(log)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
        )
        self.procs.append(proc)
        return proc

    def _server(self, port: int, name: str, *extra: str) -> None:
        work = self.directory / name
        work.mkdir()
        self._spawn(["--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                     "--dir", str(work), "--min-replicas-to-write", str(self.min_replicas_to_write), *extra], name)

    def start(self) -> None:
        master, replica = free_port(), free_port()
        self.data_ports = [master, replica]
        self._server(master, "master")
        self._wait(lambda: redis.Redis(host=HOST, port=master).ping())
        self._server(replica, "replica", "--replicaof", HOST, str(master))
        self._wait(lambda: redis.Redis(host=HOST, port=replica).info("replication").get("master_link_status")
                   == "up")
        for i in range(3):
            port = free_port()
            self.sentinel_ports.append(port)
            conf = self.directory / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} {HOST} {master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._spawn([str(conf), "--sentinel"], f"sentinel{i}")
        self._wait(self._ready, timeout=30)

    def _ready(self) -> bool:
        for port in self.sentinel_ports:
            s = redis.Redis(host=HOST, port=port, decode_responses=True, socket_timeout=1)
            state = s.sentinel_master(SERVICE)
            if int(state.get("num-other-sentinels", 0)) < 2 or int(state.get("num-slaves", 0)) < 1:
                return False
        return True

    def _wait(self, check: object, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError) as exc:
                last = exc
            time.sleep(0.05)
        logs = " | ".join(p.name + ": " + p.read_text()[-300:] for p in self.directory.glob("*.log"))
        raise RuntimeError(f"the Sentinel test setup did not get ready within {timeout} s ({last}); logs: {logs}")

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def master_port(self) -> int:
        s = redis.Redis(host=HOST, port=self.sentinel_ports[0], decode_responses=True, socket_timeout=2)
        return int(s.sentinel_get_master_addr_by_name(SERVICE)[1])

    def failover(self, timeout: float = 30.0) -> int:
        """``SENTINEL FAILOVER``; waits until every Sentinel names the other data server as master, and that
        server takes writes. Returns the new master's port."""
        old = self.master_port()
        new = next(p for p in self.data_ports if p != old)
        s = redis.Redis(host=HOST, port=self.sentinel_ports[0], socket_timeout=2)
        s.execute_command("SENTINEL", "FAILOVER", SERVICE)

        def switched() -> bool:
            for port in self.sentinel_ports:
                addr = redis.Redis(host=HOST, port=port, decode_responses=True,
                                   socket_timeout=1).sentinel_get_master_addr_by_name(SERVICE)
                if int(addr[1]) != new:
                    return False
            return redis.Redis(host=HOST, port=new, decode_responses=True).info("replication")["role"] == "master"

        self._wait(switched, timeout=timeout)
        return new

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SentinelCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
