"""What flow control holds right now, read from Redis: per queue, the tenants with queued jobs and the jobs of
limited tasks. Used by ``asyncq queues``, ``asyncq tenant list`` and the fleet's Prometheus gauges (which
carry only a ``queue`` label: the tenant count and sums, never one series per tenant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asyncq import keys
from asyncq.broker import now_ms

if TYPE_CHECKING:
    from asyncq.app import App


@dataclass
class FlowSummary:
    """One queue's flows: ready and waiting jobs per tenant, and per limited task what holds it."""

    queue: str
    tenants: dict[str, list[int]] = field(default_factory=dict)  # tenant -> [ready, waiting]
    limited: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> ready, in flight, next start (s)
    weights: dict[str, float] = field(default_factory=dict)

    def top(self, n: int) -> list[tuple[str, int, int]]:
        rows = sorted(self.tenants.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return [(t, r, w) for t, (r, w) in rows[:n]]

    @property
    def limited_ready(self) -> int:
        """Ready jobs of limited tasks (claimed as their rate and caps allow)."""
        return int(sum(row["ready"] for row in self.limited.values()))

    @property
    def tenant_ready(self) -> int:
        return sum(r for r, _ in self.tenants.values())


async def flow_summary(app: App, queue: str) -> FlowSummary:
    broker = await app.broker()
    summary = FlowSummary(queue, weights=await broker.tenant_weights(queue))
    now = now_ms()
    for _lane, suffix, ready, waiting in await broker.flows(queue):
        counts = summary.tenants.setdefault(keys.tenant_of_suffix(suffix), [0, 0])
        counts[0] += ready
        counts[1] += waiting
        if "#f:" in suffix:
            task = suffix.split("#f:", 1)[1]
            row = summary.limited.setdefault(task, {"ready": 0, "in_flight": 0, "next_start_in": 0.0})
            row["ready"] += ready
            row["in_flight"], tat = await broker.task_limit_state(task)
            row["next_start_in"] = max(0.0, (tat - now) / 1000)
    return summary

