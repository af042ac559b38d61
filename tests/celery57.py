"""Stock Celery 5.7 in a virtual environment of its own, for the interop tests (no tests in this module).

Celery 5.7's ``redis`` extra needs redis>=6.4, which arq's ``redis<6`` pin excludes, so Celery 5.7 cannot live in
the project's environment. ``venv()`` builds ``<repo>/.venvs/celery57`` once (``python -m venv`` + ``pip install
"celery[redis]>=5.7,<5.8"``), writes a marker after a successful install, and reuses it afterwards. Creation is
serialised with an ``fcntl`` lock, so two pytest processes never build it at once; a half-built venv (no marker)
is thrown away and built again. When the install fails (no network, no such version), the caller's test is
skipped with pip's last lines as the reason.

``start_worker``/``stop`` run a stock ``celery worker`` from the venv in a temporary project directory;
``run_script`` runs a Python script (a Celery 5.7 producer) with the venv's interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import stop_process

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".venvs"
VENV = VENVS / "celery57"
REQUIREMENT = "celery[redis]>=5.7,<5.8"
MARKER = VENV / ".asyncq-ready"  # JSON: the requirement and the versions installed; written last
LOCK = VENVS / "celery57.lock"
# all under the interop tests' pytest timeout (300 s), so that a stuck build skips or fails with its reason
LOCK_WAIT = 270.0  # seconds to wait for another process's build before failing
VENV_TIMEOUT = 60.0  # python -m venv
PIP_TIMEOUT = 200.0  # pip install
TAIL_LINES = 25  # pip's last lines in a skip reason


@dataclass(frozen=True)
class Celery57:
    """A ready venv: its interpreter, its ``celery`` script and what it holds."""

    root: Path
    versions: dict[str, str]
    built_in: float | None  # seconds this call spent building it; None when it was reused

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def celery(self) -> Path:
        return self.root / "bin" / "celery"


@dataclass(frozen=True)
class ScriptResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        """The last stdout line, parsed (scripts print their report last)."""
        lines = self.stdout.strip().splitlines()
        assert self.returncode == 0 and lines, f"script failed (exit {self.returncode}):\n{self.describe()}"
        return json.loads(lines[-1])

    def describe(self) -> str:
        return f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def _locked(path: Path, wait: float = LOCK_WAIT) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``; fails (does not hang) after ``wait`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {wait:.0f} s (another build stuck?)") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _ready(root: Path = VENV) -> dict[str, str] | None:
    """The versions recorded by a finished build of this requirement, or None."""
    marker = root / MARKER.name
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if data.get("requirement") != REQUIREMENT:
        return None
    if not (root / "bin" / "python").exists() or not (root / "bin" / "celery").exists():
        return None  # e.g. the base interpreter the venv points at is gone
    versions: dict[str, str] = data["versions"]
    return versions


def _run(cmd: Sequence[str | Path], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              env=venv_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return subprocess.CompletedProcess(exc.cmd, -1, out, f"timed out after {timeout:.0f} s")


def _build(root: Path) -> dict[str, str]:
    """Build the venv from scratch; ``pytest.skip`` with the tool's last lines when that fails."""
    shutil.rmtree(root, ignore_errors=True)
    made = _run([sys.executable, "-m", "venv", root], VENV_TIMEOUT)
    if made.returncode != 0:
        pytest.skip(f"cannot create {root} (python -m venv, exit {made.returncode}):\n"
                    f"{_tail(made.stdout + made.stderr)}")
    pip = _run([root / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check",
                "--no-input", "--progress-bar", "off", REQUIREMENT], PIP_TIMEOUT)
    if pip.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)  # never leave a venv that a later run could mistake for ready
        pytest.skip(f"cannot install {REQUIREMENT} into {root} (pip exit {pip.returncode}; no network?):\n"
                    f"{_tail(pip.stdout + pip.stderr)}")
    probe = _run([root / "bin" / "python", "-c",
                  "import json, celery, kombu, redis; print(json.dumps({'celery': celery.__version__, "
                  "'kombu': kombu.__version__, 'redis': redis.__version__}))"], 60)
    if probe.returncode != 0:
        raise RuntimeError(f"{root}: pip succeeded but celery does not import:\n{_tail(probe.stderr)}")
    versions: dict[str, str] = json.loads(probe.stdout.strip().splitlines()[-1])
    if not versions["celery"].startswith("5.7."):
        raise RuntimeError(f"{root}: pip installed celery {versions['celery']}, not 5.7.x")
    tmp = root / f"{MARKER.name}.tmp"
    tmp.write_text(json.dumps({"requirement": REQUIREMENT, "versions": versions, "python": sys.version}))
    os.replace(tmp, root / MARKER.name)  # the marker appears whole, and only after everything above
    return versions


def venv(root: Path = VENV) -> Celery57:
    """The Celery 5.7 venv, built on first use (cold: one pip install, ~5 s here on a fast network), reused after."""
    versions = _ready(root)
    if versions is not None:
        return Celery57(root, versions, None)
    with _locked(root.parent / f"{root.name}.lock"):  # LOCK for the default root
        versions = _ready(root)  # another process may have finished it while this one waited
        if versions is not None:
            return Celery57(root, versions, None)
        started = time.monotonic()
        versions = _build(root)
        return Celery57(root, versions, time.monotonic() - started)


def venv_env(pythonpath: Sequence[Path | str] = (), **extra: str) -> dict[str, str]:
    """An environment for the venv's programs: nothing of the project's environment on their import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def start_worker(c57: Celery57, project: Path, module: str, *, queues: str | None = None, name: str = "c57",
                 log_name: str = "celery57.log", concurrency: int = 4) -> subprocess.Popen[bytes]:
    """A stock Celery 5.7 worker (``-P threads``) for ``<module>:app``, run in ``project``; output goes to
    ``project/log_name``. Stop it with ``stop`` (conftest's ``stop_process``)."""
    cmd = [str(c57.celery), "-A", f"{module}:app", "worker", "-P", "threads", "-c", str(concurrency),
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


def run_script(c57: Celery57, source: str, project: Path, *, name: str = "producer57.py", timeout: float = 90.0,
               args: Sequence[str] = ()) -> ScriptResult:
    """Run ``source`` with the venv's Python, in ``project`` (importable), and return its output. A script that
    overruns ``timeout`` is killed and reported with exit code -9 and what it printed so far."""
    script = project / name
    script.write_text(source)
    try:
        done = subprocess.run([str(c57.python), str(script), *args], cwd=project, env=venv_env([project]),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        def text(v: str | bytes | None) -> str:
            return v.decode(errors="replace") if isinstance(v, bytes) else (v or "")

        return ScriptResult(-9, text(exc.stdout), text(exc.stderr) + f"\n(killed after {timeout:.0f} s)")
    return ScriptResult(done.returncode, done.stdout, done.stderr)
