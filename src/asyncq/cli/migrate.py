"""``asyncq migrate scan PATH``: what a Celery codebase uses, and what asyncq.compat does with each feature."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from asyncq.cli._common import AsJson, Namespace, RedisUrl, cli, dumps, fail, out

T = TypeVar("T")

migrate_cli = typer.Typer(help="Move a Celery project to asyncq: scan it for what needs a change.",
                          no_args_is_help=True)
cli.add_typer(migrate_cli, name="migrate")


@migrate_cli.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of the Celery project.", show_default=False)],
    as_json: AsJson = False,
    fail_on: Annotated[
        str, typer.Option("--fail-on", metavar="unsupported|change|check|no-effect|never",
                          help="Exit 1 when a finding is at or above this verdict.")
    ] = "change",
    show: Annotated[
        str, typer.Option("--show", metavar="supported|no-effect|check|change|unsupported",
                          help="Text output: list findings at or above this verdict.")
    ] = "supported",
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob of files to skip (repeatable), e.g. 'tests/*'.")
    ] = None,
) -> None:
    """Read a Celery codebase with Python's ast module (nothing is imported or run) and report each task, the
    Celery features it uses, whether asyncq.compat supports each, and what to change.

    Exit code: 0 when no finding is at or above --fail-on; 1 when one is, or a file does not parse; 2 for bad
    input (a missing path, or no Python file that could be scanned).
    """
    from asyncq.migrate import FailOn, Verdict
    from asyncq.migrate import scan as run_scan
    from asyncq.migrate.render import render_text

    try:
        threshold = FailOn(fail_on)
    except ValueError:
        fail(f"--fail-on {fail_on!r}: use one of {', '.join(v.value for v in FailOn)}", 2)
    try:
        minimum = Verdict(show)
    except ValueError:
        fail(f"--show {show!r}: use one of {', '.join(v.value for v in Verdict)}", 2)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}", 2)
    report = run_scan(paths, exclude or [])
    if as_json:
        out.print(dumps(report.as_dict(threshold)), markup=False, highlight=False, soft_wrap=True)
    else:
        render_text(report, out, threshold, minimum)
    raise typer.Exit(report.exit_code(threshold))


# --- the side-by-side router (asyncq.compat.router) -----------------------------------------------------------
route_cli = typer.Typer(
    help="Route rules for side-by-side running: which tasks go to Celery workers, which to asyncq, canaries.",
    no_args_is_help=True,
)
migrate_cli.add_typer(route_cli, name="route")


def _route_redis(redis_url: str | None) -> Any:
    import os

    import redis

    from asyncq.settings import DEFAULT_REDIS_URL

    return redis.Redis.from_url(redis_url or os.environ.get("ASYNCQ_REDIS_URL") or DEFAULT_REDIS_URL)


def _route_namespace(namespace: str | None) -> str:
    """--namespace, else $ASYNCQ_NAMESPACE, else none: the rules of the Celery app's ``asyncq_namespace``."""
    import os

    from asyncq.exceptions import ConfigurationError
    from asyncq.keys import check_namespace

    try:
        return check_namespace(namespace if namespace is not None else os.environ.get("ASYNCQ_NAMESPACE", ""))
    except ConfigurationError as exc:
        fail(str(exc), 2)


def _route_call(fn: Callable[[], T]) -> T:
    from redis.exceptions import RedisError

    try:
        return fn()
    except RedisError as exc:
        fail(f"Redis: {exc}; check --redis-url / ASYNCQ_REDIS_URL")


@route_cli.command("set")
def route_set(
    pattern: Annotated[str, typer.Argument(help="A task name or a glob, e.g. 'billing.*' or '*'.")],
    target: Annotated[str, typer.Argument(metavar="celery|asyncq|N%",
                                          help="Where the calls go; N% sends that share to asyncq (a canary).")],
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Add or replace a rule. Running producers pick it up within their cache TTL (2 s by default)."""
    from asyncq.compat.router import parse_rule, set_rule

    try:
        parse_rule(pattern, target)
    except ValueError as exc:
        fail(str(exc), 2)
    client = _route_redis(redis_url)
    rule = _route_call(lambda: set_rule(client, pattern, target, _route_namespace(namespace)))
    out.print(f"{rule.pattern} -> {rule.describe()}", markup=False)


@route_cli.command("rm")
def route_rm(
    pattern: Annotated[str, typer.Argument(help="The pattern exactly as set.")],
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Remove a rule (calls it matched fall to the next matching rule, or the default: celery)."""
    from asyncq.compat.router import remove_rule

    client = _route_redis(redis_url)
    if not _route_call(lambda: remove_rule(client, pattern, _route_namespace(namespace))):
        fail(f"no rule {pattern!r} (see: asyncq migrate route show)")
    out.print(f"removed {pattern}", markup=False)


@route_cli.command("show")
def route_show(
    tasks: Annotated[list[str] | None, typer.Argument(help="Task names: where does each go now?",
                                                      show_default=False)] = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    as_json: AsJson = False,
) -> None:
    """The rules (most specific first) and, for the given task names, where each call goes now."""
    from asyncq.compat.router import explain, load_rules

    client = _route_redis(redis_url)
    rules = _route_call(lambda: load_rules(client, _route_namespace(namespace)))
    order = sorted(rules.by_pattern.values(), key=lambda r: (any(c in r.pattern for c in "*?["),
                                                             -len(r.pattern), r.pattern))
    where = {name: explain(rules, name) for name in tasks or []}
    if as_json:
        out.print(dumps({
            "rules": [{"pattern": r.pattern, "route": r.value} for r in order],
            "tasks": {n: {"goes_to": w, "rule": why} for n, (w, why) in where.items()},
        }), markup=False, highlight=False, soft_wrap=True)
        return
    if not order:
        out.print("no route rules: every call goes to the default (celery)", markup=False)
    for r in order:
        out.print(f"{r.pattern:<40} {r.describe()}", markup=False)
    for name, (goes, why) in where.items():
        out.print(f"{name}: {goes}  (rule: {why})", markup=False)
