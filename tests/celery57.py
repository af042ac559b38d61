"""Stock Celery 5.7 in a virtual environment of its own, for the interop tests (no tests in this module).

Stock Celery belongs in no environment of the project's (the parity suite's Celery is a test tool, this one is
the thing asyncq must interoperate with). ``venv()`` builds ``<repo>/.venvs/celery57`` once through
``tests/venvs.py`` (``pip install "celery[redis]>=5.7,<5.8"``) and reuses it afterwards.

``start_worker``/``stop`` run a stock ``celery worker`` from the venv in a temporary project directory;
``run_script`` runs a Python script (a Celery 5.7 producer) with the venv's interpreter.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import stop_process
from .venvs import ScriptResult, Venv, VenvSpec, ensure, run_script, venv_env

__all__ = ["SPEC", "Celery57", "ScriptResult", "log_of", "run_script", "start_worker", "stop", "venv"]

SPEC = VenvSpec(
    "celery57", ("celery[redis]>=5.7,<5.8",), ("celery", "kombu", "redis"),
    check=lambda v: None if v["celery"].startswith("5.7.") else f"pip installed celery {v['celery']}, not 5.7.x",
)
Celery57 = Venv


def venv() -> Venv:
    """The Celery 5.7 venv, built on first use, reused after."""
    return ensure(SPEC)


def start_worker(c57: Venv, project: Path, module: str, *, queues: str | None = None, name: str = "c57",
                 log_name: str = "celery57.log", concurrency: int = 4) -> subprocess.Popen[bytes]:
    """A stock Celery 5.7 worker (``-P threads``) for ``<module>:app``, run in ``project``; output goes to
    ``project/log_name``. Stop it with ``stop`` (conftest's ``stop_process``)."""
    cmd = [str(c57.bin("celery")), "-A", f"{module}:app", "worker", "-P", "threads", "-c", str(concurrency),
           "--loglevel=WARNING", "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", f"{name}@%h"]
    if queues:
        cmd += ["-Q", queues]
    log = open(project / log_name, "wb")  # noqa: SIM115 - the child holds it; closed here right after the fork
    try:
        return subprocess.Popen(cmd, cwd=project, env=venv_env([project]), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL after ``grace`` seconds: conftest's ``stop_process``."""
    stop_process(proc, grace)


def log_of(project: Path, log_name: str = "celery57.log") -> str:
    path = project / log_name
    return path.read_text(errors="replace")[-6000:] if path.exists() else "(no log)"
