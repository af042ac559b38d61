"""What a scan produces: findings (one Celery feature at one place, with asyncq's verdict), tasks, files that could
not be read, and the exit code a CI job gets."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    """How asyncq.compat treats a Celery feature, from harmless to blocking."""

    supported = "supported"  # works unchanged under asyncq.compat
    no_effect = "no-effect"  # accepted and ignored: asyncq does not need it (harmless)
    check = "check"  # could not be decided from the source (a value computed at run time): verify by hand
    change = "change"  # works after a small edit (an import, a renamed setting, a call form)
    unsupported = "unsupported"  # asyncq.compat cannot do it: keep this part on Celery or redesign it


SEVERITY = {Verdict.supported: 0, Verdict.no_effect: 1, Verdict.check: 2, Verdict.change: 3,
            Verdict.unsupported: 4}


class FailOn(enum.StrEnum):
    """The lowest verdict that makes ``asyncq migrate scan`` exit 1."""

    unsupported = "unsupported"
    change = "change"
    check = "check"
    no_effect = "no-effect"
    never = "never"


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    feature: str
    verdict: Verdict
    detail: str = ""
    task: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "task": self.task, "feature": self.feature,
                "verdict": str(self.verdict), "detail": self.detail}


@dataclass(slots=True)
class TaskInfo:
    """One Celery task: a decorated function or a ``Task`` subclass with ``run()``."""

    name: str
    path: str
    line: int
    kind: str  # "@app.task", "@shared_task", "class"
    is_async: bool = False

    def as_dict(self, findings: list[Finding]) -> dict[str, Any]:
        own = [f for f in findings if f.task == self.name]
        return {"name": self.name, "path": self.path, "line": self.line, "kind": self.kind,
                "async": self.is_async, "verdict": str(worst(own)), "features": [f.as_dict() for f in own]}


@dataclass(frozen=True, slots=True)
class FileError:
    path: str
    message: str


@dataclass(slots=True)
class Report:
    root: str
    files_scanned: int = 0
    tasks: list[TaskInfo] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {str(v): 0 for v in Verdict}
        for f in self.findings:
            out[str(f.verdict)] += 1
        return out

    def exit_code(self, fail_on: FailOn) -> int:
        """0: nothing at or above ``fail_on``; 1: something is; 2: nothing could be scanned.

        A file that does not parse could not be checked, so it counts as ``unsupported``."""
        if self.files_scanned == 0:
            return 2
        if fail_on is FailOn.never:
            return 0
        threshold = SEVERITY[Verdict(fail_on.value)]
        levels = [SEVERITY[f.verdict] for f in self.findings]
        if self.errors:
            levels.append(SEVERITY[Verdict.unsupported])
        return 1 if any(level >= threshold for level in levels) else 0

    def as_dict(self, fail_on: FailOn) -> dict[str, Any]:
        loose = [f.as_dict() for f in self.findings if f.task is None]
        return {
            "root": self.root,
            "files_scanned": self.files_scanned,
            "exit_code": self.exit_code(fail_on),
            "fail_on": str(fail_on),
            "counts": self.counts(),
            "errors": [{"path": e.path, "message": e.message} for e in self.errors],
            "tasks": [t.as_dict(self.findings) for t in self.tasks],
            "findings": loose,
        }


def worst(findings: list[Finding]) -> Verdict:
    verdict = Verdict.supported
    for f in findings:
        if SEVERITY[f.verdict] > SEVERITY[verdict]:
            verdict = f.verdict
    return verdict
