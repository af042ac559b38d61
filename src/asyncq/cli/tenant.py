"""``asyncq tenant weight QUEUE TENANT N`` and ``asyncq tenant list QUEUE``: fair share between tenants, seen and
steered from the shell (a thin shell over ``App.set_tenant_weight`` and ``Broker.flows``).

``flow_summary`` is also what ``asyncq queues`` prints under its table: the tenants with the most ready jobs
(top N, so the output stays short with thousands of tenants) and the jobs of limited tasks.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from asyncq import keys
from asyncq.cli._common import AppPath, AsJson, RedisUrl, cli, dumps, fail, make_app, out, run
from asyncq.exceptions import ConfigurationError
from asyncq.flow import check_weight
from asyncq.flow_stats import FlowSummary, flow_summary

__all__ = ["FlowSummary", "flow_summary", "print_limited", "tenant_cli"]

tenant_cli = typer.Typer(help="Fair share between tenants: weights and per-tenant queued jobs.", no_args_is_help=True)
cli.add_typer(tenant_cli, name="tenant")


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
