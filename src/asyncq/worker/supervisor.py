"""``asyncq worker --processes N`` and ``--reload``: one small parent that runs the real workers as children.

Why child processes and not threads: one asyncio worker uses one core; ``--processes N`` puts N of them on N
cores (Celery's prefork ``-c``, ``dramatiq --processes``). Why a fresh interpreter per child (not ``fork``): a
child started with ``python -m asyncq worker ...`` imports the user's code anew, which is what ``--reload``
needs, and forking after the App opened connections or threads is unsafe.

What the parent does, and nothing else (it never talks to Redis):
- starts N children with the same command line (less ``--processes`` and ``--reload``);
- restarts a child that exits non-zero, after a backoff that doubles per quick crash (1 s to 30 s); a child that
  ran ``STABLE_AFTER`` seconds resets its count. After ``max_crashes`` quick crashes in a row of one child it
  stops the others and exits 1: a worker that cannot start (bad import, wrong Redis URL) must not be restarted
  forever while the orchestrator believes all is well;
- forwards SIGTERM/SIGINT to every child (each then stops gracefully, a second signal hands its jobs back) and
  exits 0 once they have; a child that exits 0 on its own (``--burst``) is not restarted;
- with ``--reload``, restarts every child (SIGTERM, wait) when a ``.py`` file under the watched folder changes.

Each child is in its own session (a terminal's Ctrl-C reaches only the parent, which forwards it once) and, on
Linux, dies with the parent (``PR_SET_PDEATHSIG``), so a SIGKILLed parent leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from asyncq.embedded import _die_with_parent
from asyncq.exceptions import ConfigurationError

log = logging.getLogger("asyncq.supervisor")

STABLE_AFTER = 30.0  # a child that ran this long was not crash-looping
MAX_BACKOFF = 30.0
#: set in each child's environment: the child is supervised (and must not supervise in turn)
CHILD_ENV = "ASYNCQ_SUPERVISED_CHILD"


def parse_processes(value: str | int) -> int:
    """``--processes``: a positive number, or ``auto`` for the machine's CPU count."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise ConfigurationError(f"--processes {value!r} is not a number: give N (e.g. 4) or auto") from None
    if n < 1:
        raise ConfigurationError(f"--processes must be >= 1 (or auto), got {n}")
    return n


def child_argv(argv: Sequence[str]) -> list[str]:
    """The command line for one child: this one without ``--processes N`` / ``--processes=N`` / ``--reload``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes=") or arg in ("--reload", "--no-reload"):
            continue
        out.append(arg)
    return out


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0
    restart_at: float | None = None
    finished: bool = False  # exited 0 on its own (--burst): not restarted
    history: list[int] = field(default_factory=list)


class Supervisor:
    """Run ``command`` ``processes`` times and keep them running; ``run()`` returns the exit code."""

    def __init__(self, command: Sequence[str], processes: int, *, max_crashes: int = 5,
                 reload_dir: Path | None = None, stop_grace: float = 60.0) -> None:
        self.command = list(command)
        self.slots = [_Slot(i) for i in range(processes)]
        self.max_crashes = max_crashes
        self.reload_dir = reload_dir
        self.stop_grace = stop_grace
        self._stop_signal: int | None = None
        self._reload = threading.Event()
        self._watch_stop = threading.Event()

    # --- children ------------------------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        env = {**os.environ, CHILD_ENV: str(slot.index)}
        slot.proc = subprocess.Popen(
            self.command, env=env, start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
        )
        slot.started = time.monotonic()
        slot.restart_at = None
        log.info("started worker process %d (pid %d)", slot.index, slot.proc.pid)

    def _signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    def _wait_all(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %d (pid %d) did not stop within %.0f s; killing it", slot.index,
                            slot.proc.pid, grace)
                slot.proc.kill()
                slot.proc.wait()

    def _on_exit(self, slot: _Slot, code: int, now: float) -> str | None:
        """Handle a child that exited by itself; returns a reason to give up, else None."""
        slot.proc = None
        if code == 0:
            slot.finished = True
            log.info("worker process %d exited normally", slot.index)
            return None
        slot.crashes = 1 if now - slot.started >= STABLE_AFTER else slot.crashes + 1
        if slot.crashes >= self.max_crashes:
            return (f"worker process {slot.index} exited with code {code} {slot.crashes} times in a row, each "
                    f"within {STABLE_AFTER:.0f} s of starting; giving up (its own output above says why)")
        backoff = min(MAX_BACKOFF, 2.0 ** (slot.crashes - 1))
        slot.restart_at = now + backoff
        log.warning("worker process %d exited with code %d; restarting it in %.0f s", slot.index, code, backoff)
        return None

    # --- main loop -----------------------------------------------------------------------------------------
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is None:
            log.info("%s: stopping %d worker process(es)", signal.Signals(signum).name, len(self.slots))
        self._stop_signal = signum
        self._signal_all(signum)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        watcher = self._start_watcher()
        try:
            return self._loop()
        finally:
            self._watch_stop.set()
            if watcher is not None:
                watcher.join(5)
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _loop(self) -> int:
        for slot in self.slots:
            self._start(slot)
        while True:
            if self._stop_signal is not None:
                self._wait_all(self.stop_grace)
                return 0
            if self._reload.is_set():
                self._reload.clear()
                log.info("a .py file changed under %s: restarting the worker process(es)", self.reload_dir)
                self._signal_all(signal.SIGTERM)
                self._wait_all(self.stop_grace)
                for slot in self.slots:
                    slot.crashes, slot.finished = 0, False
                    self._start(slot)
                continue
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None and (code := slot.proc.poll()) is not None and self._stop_signal is None:
                    reason = self._on_exit(slot, code, now)
                    if reason is not None:
                        log.error("%s", reason)
                        self._signal_all(signal.SIGTERM)
                        self._wait_all(self.stop_grace)
                        return 1
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot)
            if all(s.finished for s in self.slots) and self.reload_dir is None:
                return 0
            time.sleep(0.1)

    # --- --reload ------------------------------------------------------------------------------------------
    def _start_watcher(self) -> threading.Thread | None:
        if self.reload_dir is None:
            return None
        try:
            import watchfiles  # optional: only --reload needs it
        except ImportError:
            raise ConfigurationError(
                "--reload needs the watchfiles package: pip install 'asyncq[reload]' (or pip install watchfiles)"
            ) from None
        folder, stop = self.reload_dir, self._watch_stop

        def run() -> None:
            for _changes in watchfiles.watch(folder, watch_filter=watchfiles.PythonFilter(), stop_event=stop):
                self._reload.set()

        thread = threading.Thread(target=run, name="asyncq-reload", daemon=True)
        thread.start()
        return thread


def supervise_worker_command(processes: int, reload: bool, argv: Sequence[str] | None = None) -> int:
    """What ``asyncq worker --processes N`` / ``--reload`` runs in the parent: the same command line, less
    those two options, as N children (``python -m asyncq worker ...``); returns the exit code."""
    args = child_argv(sys.argv[1:] if argv is None else argv)
    command = [sys.executable, "-m", "asyncq", *args]
    what = f"{processes} worker process(es)" + (f", reloading on .py changes under {os.getcwd()}" if reload else "")
    log.info("asyncq supervisor (pid %d): %s", os.getpid(), what)
    return Supervisor(command, processes, reload_dir=Path.cwd() if reload else None).run()
