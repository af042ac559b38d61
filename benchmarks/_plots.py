"""PNG plots of run.py's medians: ``python _plots.py results.json outdir`` (run in .venvs/plots, matplotlib).

Prints the name of every PNG it wrote, one per line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HIGHLIGHT = "#d62728"
OTHER = "#7f7f7f"


def bars(ax: Any, labels: list[str], values: list[float], unit: str, title: str, log: bool = False) -> None:
    colors = [HIGHLIGHT if lab.startswith("asyncq") else OTHER for lab in labels]
    ypos = range(len(labels))
    ax.barh(list(ypos), values, color=colors)
    ax.set_yticks(list(ypos), labels)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_xscale("log")
    for y, v in zip(ypos, values, strict=True):
        ax.text(v, y, f" {v:,.0f}" if v >= 100 else f" {v:,.2f}", va="center", fontsize=8)
    ax.margins(x=0.25)


def series(data: dict[str, Any], labels: dict[str, str], wl: str, metric: str) -> tuple[list[str], list[float]]:
    rows = [(labels.get(k, k), v[metric]) for k, v in data.get(wl, {}).items() if v.get(metric) is not None]
    return [r[0] for r in rows], [r[1] for r in rows]


def main() -> None:
    summary = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    data, labels = summary["data"], summary["labels"]
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        written.append(name)

    simple = [
        ("w1", "jobs_per_s", "jobs/s (higher is better)", "W1 drain: 20,000 queued no-ops, one worker",
         "w1_drain.png", False),
        ("w2", "seconds", "wall seconds (lower is better)", "W2: 10,000 x 50 ms sleep", "w2_sleep.png", True),
        ("w2", "rss_mb", "worker peak RSS, MB (lower is better)", "W2: worker peak RSS", "w2_rss.png", False),
        ("w1", "cmds_per_job", "Redis commands per job (lower is better)", "W7: Redis commands per job",
         "w7_commands.png", False),
        ("w1", "cpu_per_1000", "worker CPU s per 1,000 jobs (lower is better)", "W7: worker CPU per 1,000 jobs",
         "w7_cpu.png", False),
    ]
    for wl, metric, unit, title, name, log in simple:
        labs, vals = series(data, labels, wl, metric)
        if vals:
            fig, ax = plt.subplots(figsize=(7, 0.45 * len(vals) + 1.2))
            bars(ax, labs, vals, unit, title, log)
            save(fig, name)

    for wl, metrics, title, name in [
        ("w3", ["p50", "p99"], "W3: enqueue-to-start latency at 100 jobs/s, idle worker", "w3_latency.png"),
        ("w4", ["p50", "p99"], "W4: no-op latency behind 20 x 2 s jobs, default settings", "w4_hol.png"),
        ("w1e", ["one", "batch"], "W1e: enqueue 20,000 jobs, jobs/s", "w1e_enqueue.png"),
    ]:
        rows = [(labels.get(k, k), v) for k, v in data.get(wl, {}).items()]
        if not rows:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(10, 0.45 * len(rows) + 1.4))
        for ax, m in zip(axes, metrics, strict=True):
            labs = [r[0] for r in rows if r[1].get(m) is not None]
            vals = [r[1][m] for r in rows if r[1].get(m) is not None]
            unit = "jobs/s (higher is better)" if wl == "w1e" else "ms, log scale (lower is better)"
            bars(ax, labs, vals, unit, f"{m}", log=wl != "w1e")
        fig.suptitle(title, fontsize=11)
        save(fig, name)

    w6 = data.get("w6", {})
    if w6:
        fig, ax = plt.subplots(figsize=(7, 4))
        scale = summary["scale"]
        for k, v in w6.items():
            ys = [v.get(f"x{n}") for n in scale]
            if all(y is not None for y in ys):
                lab = labels.get(k, k)
                ax.plot(scale, ys, marker="o", label=lab, color=HIGHLIGHT if lab == "asyncq" else None)
        ax.set_xticks(scale)
        ax.set_xlabel("worker processes")
        ax.set_ylabel("jobs/s")
        ax.set_yscale("log")
        ax.set_title("W6: W1 drain with 1, 2, 4 worker processes", fontsize=10)
        ax.legend(fontsize=8)
        save(fig, "w6_scale.png")

    for name in written:
        print(name)


if __name__ == "__main__":
    main()
