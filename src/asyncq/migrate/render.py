"""The scan report as rich tables (for people) or JSON (for scripts and CI)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from asyncq.migrate.model import SEVERITY, FailOn, Report, Verdict, worst

STYLE = {Verdict.supported: "green", Verdict.no_effect: "dim", Verdict.check: "yellow", Verdict.change: "cyan",
         Verdict.unsupported: "bold red"}


def _verdict(v: Verdict) -> Text:
    return Text(str(v), style=STYLE[v])


def render_text(report: Report, console: Console, fail_on: FailOn, min_verdict: Verdict = Verdict.supported) -> None:
    counts = report.counts()
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    console.print(f"Scanned {report.files_scanned} file(s) in {report.root}: {len(report.tasks)} task(s), "
                  f"{len(report.findings)} finding(s) ({summary})", markup=False, soft_wrap=True)
    if report.tasks:
        table = Table(title="Tasks", title_justify="left", show_lines=False)
        for col in ("task", "where", "kind", "async", "verdict"):
            table.add_column(col)
        for t in report.tasks:
            own = [f for f in report.findings if f.task == t.name]
            table.add_row(t.name, f"{t.path}:{t.line}", t.kind, "yes" if t.is_async else "", _verdict(worst(own)))
        console.print(table)
    shown = [f for f in report.findings if SEVERITY[f.verdict] >= SEVERITY[min_verdict]]
    if shown:
        table = Table(title="Findings", title_justify="left")
        for col in ("where", "task", "feature", "verdict", "what to do / why"):
            table.add_column(col, overflow="fold")
        for f in shown:
            task = f.task.rsplit(".", 1)[-1] if f.task else ""
            table.add_row(f"{f.path}:{f.line}", task, f.feature, _verdict(f.verdict), f.detail)
        console.print(table)
    hidden = len(report.findings) - len(shown)
    if hidden:
        console.print(f"({hidden} finding(s) below {min_verdict} not shown)", style="dim")
    for e in report.errors:
        console.print(Text(f"error: {e.path}: {e.message}", style="red"), soft_wrap=True)
    code = report.exit_code(fail_on)
    if code == 2:
        console.print(Text("exit 2: no Python file could be scanned", style="red"))
    elif code == 1:
        console.print(Text(f"exit 1: findings at or above --fail-on {fail_on}"
                           + (" (or files that could not be scanned)" if report.errors else ""), style="yellow"))
    else:
        console.print(Text(f"exit 0: nothing at or above --fail-on {fail_on}", style="green"))
