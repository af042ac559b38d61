"""Run Celery 5.6.3's own integration suite (t/integration, files unchanged) on real Celery and on asyncq.compat.

    python -m compat.celery_suite --full              # both columns, every applicable test (~15-25 min)
    python -m compat.celery_suite --column asyncq     # one column
    python -m compat.celery_suite --subset            # asyncq column, the ratchet tests only (what the test runs)

Columns: *celery* runs the files with real Celery 5.6.3 and Celery's own pytest fixtures (its embedded worker,
prefork pool); *asyncq* runs them with ``celery`` resolving to asyncq.compat, asyncq's
``asyncq.compat.contrib.pytest`` fixtures, and a real ``asyncq worker`` process serving t/integration/tasks.py.
Both use database 13 of the test Redis: the outer test run's private server when called from the test suite
(ASYNCQ_TEST_REDIS + ASYNCQ_TEST_REDIS_PRIVATE_PID), else a private redis-server started here. Celery's
tasks.py also writes to database 0 of that server (its get_redis_connection() has no database setting).
The report goes to build/test-output/celery-suite-REPORT.md (+ .json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from compat.celery_suite.applicability import NOT_APPLICABLE_FILES, NOT_APPLICABLE_TESTS, RUN_FILES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VERSION = "5.6.3"
OUT = ROOT / "build" / "test-output"
RATCHET = HERE / "ratchet.txt"
DB = 13
COLUMNS = ("celery", "asyncq")


class SdistUnavailable(RuntimeError):
    """The celery sdist is neither cached nor downloadable (offline?)."""


def cache_dir() -> Path:
    return Path(os.environ.get("ASYNCQ_CACHE_DIR", Path.home() / ".cache" / "asyncq"))


def suite_root() -> Path:
    """The extracted celery-5.6.3 directory (t/integration inside), downloading the sdist once."""
    root = cache_dir() / f"celery-{VERSION}"
    if (root / "t" / "integration" / "test_canvas.py").exists():
        return root
    sdist_dir = cache_dir() / "sdist"
    archive = sdist_dir / f"celery-{VERSION}.tar.gz"
    if not archive.exists():
        sdist_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"celery=={VERSION}", "-d", str(sdist_dir)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise SdistUnavailable(f"`{' '.join(cmd)}` did not finish in 300 s") from None
        if proc.returncode != 0 or not archive.exists():
            raise SdistUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-1000:]}")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith(f"celery-{VERSION}/t/") and m.name.count("/") <= 3]
        tar.extractall(cache_dir(), members=members, filter="data")
    return root


def redis_base() -> tuple[str, object | None]:
    """The test Redis (scheme://host:port) and the server object when started here."""
    given = os.environ.get("ASYNCQ_TEST_REDIS", "").strip().rstrip("/")
    if given and os.environ.get("ASYNCQ_TEST_REDIS_PRIVATE_PID"):
        return given, None
    if given and urlsplit(given).port not in (None, 6379):
        return given, None
    from asyncq.embedded import EmbeddedRedis

    server = EmbeddedRedis(new_session=True, die_with_parent=True)
    server.start()
    return f"redis://127.0.0.1:{server.port}", server


def flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def node_ids(nodes: list[str]) -> list[str]:
    return [f"t/integration/{n}" for n in nodes]


def run_column(column: str, root: Path, base: str, targets: list[str], xml_path: Path, timeout: float,
               log_path: Path) -> int:
    url = f"{base}/{DB}"
    host = urlsplit(base)
    flush(url)
    env = {**os.environ, "TEST_BROKER": url, "TEST_BACKEND": url, "REDIS_HOST": host.hostname or "127.0.0.1",
           "REDIS_PORT": str(host.port or 6379), "ASYNCQ_REDIS_URL": url, "CELERY_SUITE_TIMEOUT": str(timeout),
           "PYTHONPATH": os.pathsep.join([str(root), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "ASYNCQ_SUITE_STANDINS": str(xml_path.with_suffix(".standins")),
           "CELERY_SUITE_RESULTS": str(xml_path.with_suffix(".jsonl"))}
    xml_path.with_suffix(".jsonl").unlink(missing_ok=True)
    plugins = ["-p", "compat.celery_suite.common_plugin"]
    if column == "celery":
        plugins += ["-p", "celery.contrib.pytest"]
    else:
        plugins += ["-p", "compat.celery_suite.asyncq_plugin", "-p", "asyncq.compat.contrib.pytest"]
    deselect = [a for n in NOT_APPLICABLE_TESTS for a in ("--deselect", f"t/integration/{n}")]
    # --tb=native: pytest's own traceback format parses the (huge) test file with ast, which trips CPython 3.11.7's
    # "AST constructor recursion depth mismatch" and ended whole runs with an INTERNALERROR
    cmd = [sys.executable, "-m", "pytest", *targets, *plugins, *deselect, "-c", str(HERE / "pytest.ini"),
           "--rootdir", str(root), "--confcutdir", str(root), "-p", "no:cacheprovider", "-p", "no:randomly",
           "--continue-on-collection-errors",
           "-q", "-rN", "--tb=native", f"--junitxml={xml_path}", "-o", "junit_family=xunit2", "--durations=10"]
    started = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f"{column}: pytest exit {code} after {time.monotonic() - started:.0f} s (log: {log_path})", flush=True)
    return code


def outcomes(xml_path: Path) -> dict[str, tuple[str, str]]:
    """test id (file::class::name) -> (passed | failed | skipped, first line of the reason)."""
    out: dict[str, tuple[str, str]] = {}
    if not xml_path.exists():
        return partial_outcomes(xml_path.with_suffix(".jsonl"))
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        parts = classname.split(".")
        file_idx = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        test_id = "::".join([parts[file_idx] + ".py", *parts[file_idx + 1:], case.get("name", "?")])
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            out[test_id] = ("failed", message[0][:200] if message else "")
        elif skipped is not None:
            out[test_id] = ("skipped", (skipped.get("message") or "")[:200])
        else:
            out[test_id] = ("passed", "")
    return out


def partial_outcomes(jsonl: Path) -> dict[str, tuple[str, str]]:
    """The per-test lines common_plugin writes as tests finish: the outcomes of a run that did not end."""
    out: dict[str, tuple[str, str]] = {}
    if not jsonl.exists():
        return out
    for line in jsonl.read_text().splitlines():
        entry = json.loads(line)
        outcome = {"passed": "passed", "skipped": "skipped"}.get(entry["outcome"], "failed")
        if entry["id"] not in out or outcome != "passed":
            out[entry["id"]] = (outcome, entry["message"])
    return out


def read_ratchet() -> list[str]:
    if not RATCHET.exists():
        return []
    return [line.strip() for line in RATCHET.read_text().splitlines() if line.strip() and not line.startswith("#")]


def write_report(results: dict[str, dict[str, tuple[str, str]]], meta: dict[str, str], path: Path) -> str:
    names = sorted({n for col in results.values() for n in col} | set(NOT_APPLICABLE_TESTS))
    lines = [f"# Celery {VERSION}'s integration suite on real Celery and on asyncq.compat", "",
             f"Generated by `python -m compat.celery_suite` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
             f"{meta.get('note', '')}", ""]
    totals = []
    for col in results:
        counts = {k: sum(1 for o, _ in results[col].values() if o == k) for k in ("passed", "failed", "skipped")}
        na = len(NOT_APPLICABLE_TESTS)
        totals.append(f"- **{col}**: collected {len(results[col])}, passed {counts['passed']}, "
                      f"failed {counts['failed']}, skipped {counts['skipped']}, not applicable {na} tests "
                      f"(+ {len(NOT_APPLICABLE_FILES)} files)")
    lines += [*totals, "", *[f"- {k}: {v}" for k, v in meta.items() if k != "note"], "",
              "## Files not run", "", "| file | why not applicable |", "|---|---|"]
    lines += [f"| {f} | {why} |" for f, why in NOT_APPLICABLE_FILES.items()]
    lines += ["", "## Tests", "", "| test | " + " | ".join(results) + " | reason |",
              "|---|" + "---|" * len(results) + "---|"]
    for name in names:
        if name in NOT_APPLICABLE_TESTS:
            lines.append(f"| `{name}` | " + " | ".join("n.a." for _ in results)
                         + f" | not applicable: {NOT_APPLICABLE_TESTS[name]} |")
            continue
        cells = [results[col].get(name, ("not run", "")) for col in results]
        reason = "; ".join(f"{col}: {msg}" for col, (o, msg) in zip(results, cells, strict=True)
                           if o != "passed" and msg).replace("|", "\\|")
        lines.append(f"| `{name}` | " + " | ".join(o for o, _ in cells) + f" | {reason} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps({c: {n: list(v) for n, v in r.items()}
                                                     for c, r in results.items()}, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="both columns, every applicable test")
    parser.add_argument("--column", choices=COLUMNS, action="append", help="run only this column (repeatable)")
    parser.add_argument("--subset", action="store_true", help="only the tests of ratchet.txt (asyncq column)")
    parser.add_argument("--files", nargs="*", help="only these files of t/integration (default: all applicable)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per test (default 30)")
    parser.add_argument("--out", type=Path, default=OUT, help="where logs and JUnit XML go (build/test-output)")
    parser.add_argument("--report", type=Path, help="the report (default: OUT/celery-suite-REPORT.md)")
    args = parser.parse_args(argv)
    out = args.out
    args.report = args.report or out / "celery-suite-REPORT.md"
    columns = args.column or (["asyncq"] if args.subset else list(COLUMNS))
    try:
        root = suite_root()
    except SdistUnavailable as exc:
        print(f"SKIP: the celery {VERSION} sdist cannot be had: {exc}", flush=True)
        return 3
    targets = node_ids(read_ratchet()) if args.subset else [f"t/integration/{f}" for f in args.files or RUN_FILES]
    base, server = redis_base()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, tuple[str, str]]] = {}
    codes: dict[str, int] = {}
    meta: dict[str, str] = {}
    try:
        for column in columns:
            xml_path = out / f"celery-suite-{column}.xml"
            xml_path.unlink(missing_ok=True)
            started = time.monotonic()
            codes[column] = run_column(column, root, base, targets, xml_path, args.timeout,
                                       out / f"celery-suite-{column}.log")
            results[column] = outcomes(xml_path)
            meta[f"{column} run time"] = f"{time.monotonic() - started:.0f} s (pytest exit {codes[column]})"
            standins = xml_path.with_suffix(".standins")
            if standins.exists():
                first, *used = standins.read_text().splitlines()
                meta["asyncq alias"] = first + (f"; stand-ins used: {', '.join(used)}" if used else "")
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    meta["note"] = (f"Per-test timeout {args.timeout:.0f} s; "
                    + ("ratchet subset only." if args.subset else "every applicable test."))
    text = write_report(results, meta, args.report)
    print(text if len(text) < 20000 else text[:3000], flush=True)
    if args.subset:
        failing = [n for n in read_ratchet() if results.get("asyncq", {}).get(n.removeprefix("t/integration/"),
                                                                              ("missing", ""))[0] != "passed"]
        print(f"ratchet: {len(read_ratchet()) - len(failing)}/{len(read_ratchet())} pass", flush=True)
        for n in failing:
            print(f"RATCHET FAILED: {n}", flush=True)
        return 1 if failing else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
