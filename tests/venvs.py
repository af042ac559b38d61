"""Virtual environments of their own for tests whose package set cannot share the project's environment.

arq 0.28 pins redis-py < 6 while the project runs on the newest redis-py; stock Celery 5.7 belongs in no test
environment of ours; and "does asyncq install beside X" can only be shown in a fresh environment. ``ensure(spec)``
builds ``<repo>/.venvs/<name>`` once (``python -m venv`` + ``pip install``), writes a marker after a successful
install (with the requirements and the versions found), and reuses it afterwards; a changed requirement list
rebuilds it. Creation is serialised with an ``fcntl`` lock, so two pytest processes never build one at once; a
half-built venv (no marker) is thrown away and built again. When the install fails (no network, no such
version), the caller's test is skipped with pip's last lines as the reason.

Requirements may name the repository itself (``REPO_REQ``, installed editable, so the venv always runs the
checked-out source).
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".venvs"
MARKER_NAME = ".asyncq-ready"  # JSON: the requirements and the versions installed; written last
# all under the interop tests' pytest timeout (300 s), so that a stuck build skips or fails with its reason
LOCK_WAIT = 270.0  # seconds to wait for another process's build before failing
VENV_TIMEOUT = 60.0  # python -m venv
PIP_TIMEOUT = 240.0  # pip install
TAIL_LINES = 25  # pip's last lines in a skip reason


def repo_req(extras: str = "") -> str:
    """This checkout as a requirement (editable), with ``extras`` such as ``"arq"``."""
    return f"-e{REPO}[{extras}]" if extras else f"-e{REPO}"


def _arq_check(v: dict[str, str]) -> str | None:
    return None if v["arq"] == "0.28.0" and v["redis"].startswith("5.") else "expected arq 0.28.0 on redis-py 5.x"


@dataclass(frozen=True)
class VenvSpec:
    """What a venv must hold: pip requirements, the distributions whose versions the marker records, and a check
    of those versions (e.g. ``lambda v: v["redis"].startswith("5.")``)."""

    name: str
    requirements: tuple[str, ...]
    report: tuple[str, ...]  # distribution names, read with importlib.metadata
    check: Callable[[dict[str, str]], str | None] = field(default=lambda v: None, compare=False)
    #: the interpreter the venv is built from (e.g. pyenv's 3.12 for Django 6); None: the one running the tests.
    #: A venv whose base interpreter is missing makes its tests skip, with the reason
    python: str | None = None

    @property
    def root(self) -> Path:
        return VENVS / self.name


#: arq 0.28 and this checkout with the ``arq`` extra: redis-py 5 (arq's pin). Used by the arq interop tests and by
#: the migration guide's arq blocks.
ARQ028 = VenvSpec("arq028", (repo_req("arq"),), ("asyncq", "arq", "redis"), check=_arq_check)


@dataclass(frozen=True)
class Venv:
    """A ready venv: its interpreter and what it holds."""

    root: Path
    versions: dict[str, str]
    built_in: float | None  # seconds this call spent building it; None when it was reused

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name


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


def _ready(spec: VenvSpec) -> dict[str, str] | None:
    """The versions recorded by a finished build of these requirements, or None."""
    try:
        data = json.loads((spec.root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if (data.get("requirements") != list(spec.requirements) or data.get("base") != spec.python
            or not (spec.root / "bin" / "python").exists()):
        return None  # other requirements or base interpreter, or the base interpreter the venv points at is gone
    versions: dict[str, str] = data["versions"]
    return versions


def run(cmd: Sequence[str | Path], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              env=venv_env(), stdin=subprocess.DEVNULL, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return subprocess.CompletedProcess(exc.cmd, -1, out, f"timed out after {timeout:.0f} s")


def _build(spec: VenvSpec) -> dict[str, str]:
    """Build the venv from scratch; ``pytest.skip`` with the tool's last lines when that fails."""
    root = spec.root
    base = spec.python or sys.executable
    if not Path(base).exists():
        pytest.skip(f"cannot create {root}: its base interpreter {base} is not on this machine")
    shutil.rmtree(root, ignore_errors=True)
    made = run([base, "-m", "venv", root], VENV_TIMEOUT)
    if made.returncode != 0:
        pytest.skip(f"cannot create {root} (python -m venv, exit {made.returncode}):\n"
                    f"{_tail(made.stdout + made.stderr)}")
    pip = run([root / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off", *spec.requirements], PIP_TIMEOUT)
    if pip.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)  # never leave a venv that a later run could mistake for ready
        pytest.skip(f"cannot install {' '.join(spec.requirements)} into {root} (pip exit {pip.returncode}; "
                    f"no network?):\n{_tail(pip.stdout + pip.stderr)}")
    probe = run([root / "bin" / "python", "-c",
                 "import json, sys, importlib.metadata as m; "
                 "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))", *spec.report], 60)
    if probe.returncode != 0:
        raise RuntimeError(f"{root}: pip succeeded but the probe failed:\n{_tail(probe.stderr)}")
    versions: dict[str, str] = json.loads(probe.stdout.strip().splitlines()[-1])
    problem = spec.check(versions)
    if problem:
        raise RuntimeError(f"{root}: {problem} (installed: {versions})")
    tmp = root / f"{MARKER_NAME}.tmp"
    tmp.write_text(json.dumps({"requirements": list(spec.requirements), "versions": versions,
                               "python": sys.version, "base": spec.python}))
    os.replace(tmp, root / MARKER_NAME)  # the marker appears whole, and only after everything above
    return versions


def ensure(spec: VenvSpec) -> Venv:
    """The venv, built on first use (cold: one pip install, seconds to a minute), reused after."""
    versions = _ready(spec)
    if versions is not None:
        return Venv(spec.root, versions, None)
    with _locked(VENVS / f"{spec.name}.lock"):
        versions = _ready(spec)  # another process may have finished it while this one waited
        if versions is not None:
            return Venv(spec.root, versions, None)
        started = time.monotonic()
        versions = _build(spec)
        return Venv(spec.root, versions, time.monotonic() - started)


def venv_env(pythonpath: Sequence[Path | str] = (), **extra: str) -> dict[str, str]:
    """An environment for the venv's programs: nothing of the project's environment on their import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_script(venv: Venv, source: str, project: Path, *, name: str = "script.py", timeout: float = 90.0,
               args: Sequence[str] = (), env: dict[str, str] | None = None) -> ScriptResult:
    """Run ``source`` with the venv's Python, in ``project`` (importable), and return its output. A script that
    overruns ``timeout`` is killed and reported with exit code -9 and what it printed so far."""
    script = project / name
    script.write_text(source)
    try:
        done = subprocess.run([str(venv.python), str(script), *args], cwd=project,
                              env=venv_env([project], **(env or {})), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        def text(v: str | bytes | None) -> str:
            return v.decode(errors="replace") if isinstance(v, bytes) else (v or "")

        return ScriptResult(-9, text(exc.stdout), text(exc.stderr) + f"\n(killed after {timeout:.0f} s)")
    return ScriptResult(done.returncode, done.stdout, done.stderr)
