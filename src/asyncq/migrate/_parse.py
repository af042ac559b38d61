"""``ast.parse`` without CPython 3.11.7's spurious ``SystemError: AST constructor recursion depth mismatch``.

The check compares the thread's recursion depth before and after building the tree; a garbage collection that
runs finalizers (Python code) in between moves it, and the parse fails for no fault of the source (seen in
long test runs). Pausing the collector for the parse keeps the count still (fixed upstream in 3.11.8).
"""

from __future__ import annotations

import ast
import gc


def parse(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename=filename)
    finally:
        if enabled:
            gc.enable()
