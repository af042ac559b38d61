"""Run counts across processes, in a file rather than in Redis, so they survive the very failovers the cluster tests
cause (a counter on a killed master could lose increments together with the jobs it counts)."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

#: the environment variable naming a worker process's run log (tests/cluster_app.py writes it)
RUNLOG_ENV = "ASYNCQ_TEST_RUNLOG"


class RunLog:
    """Append-only ``<event> <n>`` lines from any number of processes (O_APPEND writes of one short line are
    atomic), read back as counts per job number."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def from_env(cls) -> RunLog | None:
        value = os.environ.get(RUNLOG_ENV)
        return cls(value) if value else None

    def record(self, event: str, n: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{event} {n}\n".encode())
        finally:
            os.close(fd)

    def counts(self, event: str) -> Counter[int]:
        found: Counter[int] = Counter()
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text().splitlines():
                kind, _, n = line.partition(" ")
                if kind == event and n.isdigit():
                    found[int(n)] += 1
        return found
