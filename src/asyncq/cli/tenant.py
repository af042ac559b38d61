"""``asyncq tenant weight QUEUE TENANT N`` and ``asyncq tenant list QUEUE``: fair share between tenants, seen and
steered from the shell (a thin shell over ``App.set_tenant_weight`` and ``Broker.flows``).

``flow_summary`` is also what ``asyncq queues`` prints under its table: the tenants with the most ready jobs
(top N, so the output stays short with thousands of tenants) and the jobs of limited tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.table import Table

from asyncq import keys
from asyncq.app import App
from asyncq.broker import now_ms
from asyncq.cli._common import AppPath, AsJson, RedisUrl, cli, dumps, fail, make_app, out, run
from asyncq.exceptions import ConfigurationError
from asyncq.flow import check_weight

tenant_cli = typer.Typer(help="Fair share between tenants: weights and per-tenant queued jobs.", no_args_is_help=True)
cli.add_typer(tenant_cli, name="tenant")


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
            row["in_flight"] = int(await broker.scard(keys.INFLIGHT_PREFIX + task))
            tat = float(await broker.get(keys.RATE_PREFIX + task) or 0)
            row["next_start_in"] = max(0.0, (tat - now) / 1000)
    return summary


def _check(queue: str, tenant: str | None = None) -> None:
    try:
        keys.check_queue_name(queue)
        if tenant is not None:
            keys.check_tenant(tenant)
    except ConfigurationError as exc:
        fail(str(exc), 2)


@tenant_cli.command("weight")
def weight(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    tenant: Annotated[str, typer.Argument(help="The tenant key jobs carry (tenant=...).")],
    n: Annotated[float, typer.Argument(metavar="N", help="Turns per round against a weight-1 tenant (default 1).")],
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
) -> None:
    """Give TENANT N turns for each turn of a weight-1 tenant in QUEUE (the next claim of every worker)."""
    _check(queue, tenant)
    try:
        check_weight(n)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    application = make_app(redis_url, app_path)

    async def go() -> None:
        async with application:
            await application.set_tenant_weight(queue, tenant, n)

    run(go())
    out.print(f"tenant {tenant} in queue {queue}: weight {n:g}", markup=False)


@tenant_cli.command("list")
def list_tenants(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    top: Annotated[int, typer.Option(min=1, help="Show the tenants with the most ready jobs, this many.")] = 20,
    as_json: AsJson = False,
    app_path: AppPath = None,
    redis_url: RedisUrl = None,
) -> None:
    """QUEUE's tenants with queued jobs (most ready first), their weights, and jobs held by a task's limit."""
    _check(queue)
    application = make_app(redis_url, app_path)

    async def go() -> FlowSummary:
        async with application:
            return await flow_summary(application, queue)

    s = run(go())
    if as_json:
        print(dumps({"queue": queue, "tenants": [{"tenant": t, "ready": r, "waiting": w,
                                                   "weight": s.weights.get(t, 1.0)} for t, r, w in s.top(top)],
                     "tenant_count": len(s.tenants), "limited": s.limited}))
        return
    table = Table("tenant", "ready", "waiting (delayed or running)", "weight")
    for t, r, w in s.top(top):
        table.add_row(t, str(r), str(w), f"{s.weights.get(t, 1.0):g}")
    out.print(table)
    if len(s.tenants) > top:
        out.print(f"... and {len(s.tenants) - top} more tenants", markup=False)
    print_limited(s)


def print_limited(s: FlowSummary) -> None:
    for task, row in sorted(s.limited.items()):
        wait = f", next start allowed in {row['next_start_in']:.2f} s (rate limit)" if row["next_start_in"] else ""
        out.print(f"  limited task {task}: {row['ready']:.0f} ready, {row['in_flight']:.0f} holding a slot"
                  f"{wait}", markup=False, soft_wrap=True)
