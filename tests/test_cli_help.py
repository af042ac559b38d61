"""Every ``asyncq`` command's and subcommand's ``--help`` renders cleanly: no type names (``<bool>``,
``<list[str]>``, ``<int>``), no braces or doubled brackets around metavars, and no mention of an option the
command does not have. Rendered in-process through Typer's runner at a wide terminal, so lines do not wrap."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from asyncq.cli import cli

TYPE_NAME = re.compile(r"<(?:bool|str|int|float|list|dict|tuple|path|none|choice)\b[^>]*>", re.IGNORECASE)
BRACED = re.compile(r"\{[A-Z_:]+\}|\[\[")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, click command) for the command and everything under it (Typer may vendor its own click, so
    groups are recognised by their ``commands``)."""
    found = [(path, group)]
    if hasattr(group, "commands"):
        for name, sub in sorted(group.commands.items()):
            found += commands(sub, (*path, name))
    return found


ROOT = typer.main.get_command(cli)
ALL = commands(ROOT)


def render(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"},
                                prog_name="asyncq")
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p, _ in ALL}
    assert {"", "worker", "enqueue", "job", "queues", "dlq", "dlq purge", "migrate scan"} <= names


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "asyncq")
def test_help_renders_cleanly(path: tuple[str, ...]) -> None:
    text = render(path)
    assert not TYPE_NAME.findall(text), TYPE_NAME.findall(text)
    assert not BRACED.findall(text), BRACED.findall(text)
    # a group's help lists its commands' first lines, which may name their options
    family = [c for p, c in ALL if p[: len(path)] == path]
    own = {opt for c in family for p in c.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}
    own.add("--help")
    mentioned = set(OPTION.findall(text))
    assert mentioned <= own, f"mentions options asyncq {' '.join(path)} does not have: {sorted(mentioned - own)}"
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert f"asyncq {' '.join(path)}".strip() in usage
