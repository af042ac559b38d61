"""``asyncq migrate scan``: read a Celery codebase with the ``ast`` module (importing nothing from it) and report
each task, the Celery features it uses, what asyncq.compat does with each, and what to change.

    from asyncq.migrate import scan
    report = scan([Path("proj")])
    report.exit_code(FailOn.change)
"""

from asyncq.migrate.model import FailOn as FailOn
from asyncq.migrate.model import FileError as FileError
from asyncq.migrate.model import Finding as Finding
from asyncq.migrate.model import Report as Report
from asyncq.migrate.model import TaskInfo as TaskInfo
from asyncq.migrate.model import Verdict as Verdict
from asyncq.migrate.scanner import scan as scan

__all__ = ["FailOn", "FileError", "Finding", "Report", "TaskInfo", "Verdict", "scan"]
