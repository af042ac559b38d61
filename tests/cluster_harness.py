"""The test run's Redis Cluster: 3 masters x 1 replica (asyncq.embedded.EmbeddedCluster), started once per pytest
process on first use, on free private ports (never 6379), and stopped when the process exits.

Every cluster test module calls :func:`cluster_or_skip` from its own fixture; one cluster serves them all (start-up
is a few seconds), and :func:`fresh_cluster` empties it (FLUSHALL on every master) before each test. A test that
killed or failed over a node leaves the cluster to :func:`cluster_or_skip`, which restarts stopped nodes and waits
until every node agrees again. Without redis-cli (it joins the nodes) or a redis-server, the tests skip and say
what to install. ASYNCQ_TEST_CLUSTER_SERVER names another redis-server to run them on.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import pytest

from asyncq.embedded import EmbeddedCluster, find_cluster_tools
from asyncq.exceptions import ConfigurationError

_cluster: EmbeddedCluster | None = None
_refusal: str | None = None
_owner = os.getpid()

#: a redis-server to run the cluster tests on (its redis-cli beside it) instead of the newest one found, e.g. a
#: Redis 6 build to test the classic pub/sub path: ASYNCQ_TEST_CLUSTER_SERVER=/opt/redis6/bin/redis-server
SERVER_ENV = "ASYNCQ_TEST_CLUSTER_SERVER"


def _stop() -> None:
    global _cluster
    cluster, _cluster = _cluster, None
    if cluster is not None and os.getpid() == _owner:
        cluster.stop()


def cluster_or_skip() -> EmbeddedCluster:
    """The shared cluster, started on first call and healthy (every node running and agreeing) on return."""
    global _cluster, _refusal
    if _refusal is not None:
        pytest.skip(_refusal)
    if _cluster is None:
        try:
            find_cluster_tools()
        except ConfigurationError as exc:
            _refusal = f"no local Redis Cluster can be started: {exc}"
            pytest.skip(_refusal)
        server = os.environ.get(SERVER_ENV) or None  # another Redis version for the whole cluster suite
        cli = str(Path(server).with_name("redis-cli")) if server else None
        cluster = EmbeddedCluster(masters=3, replicas=1, new_session=True, die_with_parent=True,
                                  executable=server, cli=cli)
        cluster.start()  # a failure here is an error, not a skip: the tools are there
        _cluster = cluster
        atexit.register(_stop)
        return cluster
    for node in _cluster.nodes:
        if not node.running:
            _cluster.restart_node(node.port)
    if not _cluster.is_ready():
        _cluster.wait_ready(timeout=30)
    return _cluster


def fresh_cluster() -> EmbeddedCluster:
    """The shared cluster, emptied."""
    cluster = cluster_or_skip()
    cluster.flushall()
    return cluster
