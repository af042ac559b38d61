"""Flow control: which tenant a job belongs to, and the global limits of a task, as the claim script needs them.

Fair share, rate limits and concurrency caps are decided in ``lua/claim.lua`` in the same atomic step that
claims a job, so they hold across every worker and process without a lock or a sleep in the worker. This
module only turns the task options into what that script reads: a job's flow suffix (its sub-lane, see
``keys.flow_suffix``) at enqueue, and the worker's table of limits at claim. ARCHITECTURE.md ("Flow control")
has the Redis structures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from asyncq.exceptions import ConfigurationError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_MS = {"s": 1000, "sec": 1000, "second": 1000, "m": 60_000, "min": 60_000, "minute": 60_000,
            "h": 3_600_000, "hour": 3_600_000}


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` starts per ``period_ms``, with up to ``burst`` at once after a quiet spell (GCRA)."""

    count: float
    period_ms: int
    burst: int

    @property
    def interval_ms(self) -> float:
        """The emission interval: one start per this many ms at the limit."""
        return self.period_ms / self.count

    @property
    def tolerance_ms(self) -> float:
        """How far ahead of the schedule a start may be (GCRA's tau): room for ``burst - 1`` extra starts."""
        return self.interval_ms * (self.burst - 1)


def parse_rate(value: str | None, what: str) -> Rate | None:
    """``"50/s"``, ``"100/m"``, ``"10/h"``, ``"5/10s"``; None for no limit.

    The burst is 1 + count/50 per second (``"200/s"``: 5): enough that a worker a few ms late does not lose
    starts for good, small enough that no one-second window sees more than the limit plus the burst.
    """
    if value is None:
        return None
    m = _RATE.match(value) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ConfigurationError(
            f"{what} must look like '50/s', '100/m' or '10/h' (a positive count per second, minute or hour), "
            f"got {value!r}"
        )
    count, times, unit = float(m.group(1)), int(m.group(2) or 1), m.group(3)
    period_ms = times * _UNIT_MS[unit]
    per_second = count * 1000 / period_ms
    return Rate(count, period_ms, 1 + int(per_second // 50))


def check_cap(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{what} must be an int >= 1 (jobs of this task in flight at once), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """A task's global limits (None: no such limit)."""

    rate: Rate | None = None
    tenant_rate: Rate | None = None
    max_concurrency: int | None = None
    tenant_concurrency: int | None = None

    @property
    def any(self) -> bool:
        return any(x is not None for x in (self.rate, self.tenant_rate, self.max_concurrency,
                                            self.tenant_concurrency))

    def row(self) -> list[float | int]:
        """The six numbers claim.lua reads: T, tau, tenant T, tenant tau, cap, tenant cap (0: none)."""
        r, t = self.rate, self.tenant_rate
        return [r.interval_ms if r else 0, r.tolerance_ms if r else 0, t.interval_ms if t else 0,
                t.tolerance_ms if t else 0, self.max_concurrency or 0, self.tenant_concurrency or 0]


def build_limits(given: Mapping[str, Any], task_name: str) -> FlowLimits:
    limits = FlowLimits(
        rate=parse_rate(given.get("rate_limit"), "rate_limit"),
        tenant_rate=parse_rate(given.get("tenant_rate_limit"), "tenant_rate_limit"),
        max_concurrency=check_cap(given.get("max_concurrency"), "max_concurrency"),
        tenant_concurrency=check_cap(given.get("tenant_concurrency"), "tenant_concurrency"),
    )
    if limits.any and "#" in task_name:
        raise ConfigurationError(f"a task with rate or concurrency limits may not have '#' in its name: {task_name!r}")
    return limits


def pack_limits(tasks: Iterable[tuple[str, FlowLimits]]) -> bytes:
    """The worker's table for the claim script: only tasks that have a limit."""
    table = {name: lim.row() for name, lim in tasks if lim.any}
    return bytes(msgpack.packb(table, use_bin_type=False))


def check_weight(weight: float) -> float:
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not math.isfinite(weight) or weight <= 0:
        raise ConfigurationError(f"a tenant weight must be a number > 0 (default 1; 3 = three turns), got {weight!r}")
    return float(weight)
