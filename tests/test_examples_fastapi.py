"""examples/fastapi_messaging/demo.py, run as a user runs it (Redis db 6): every message is delivered to the
local webhook receiver, SMTP sink and push endpoint, the flaky ones after retries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import flushed_url

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fastapi_messaging"


def test_fastapi_messaging_demo() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASYNCQ_")},
           "ASYNCQ_REDIS_URL": flushed_url(6), "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLE / "demo.py")], env=env, capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stderr
    assert "POST /messages x3: 202" in out.stdout
    assert out.stdout.count("complete after 3 tries") == 6  # webhooks and pushes: two 503s each, then delivered
    assert out.stdout.count("complete after 1 tries") == 3  # e-mails
    assert "webhook receiver got 3, push endpoint got 4" in out.stdout
    # the three e-mails are sent concurrently, by three jobs: the sink lists them in arrival order
    mails = re.search(r"SMTP sink got 3 e-mails: (.+)$", out.stdout, re.M)
    assert mails is not None, out.stdout
    assert sorted(mails.group(1).split(", ")) == ["ada@example.test", "bob@example.test", "cy@example.test"]
    assert "POST /messages/wait: pushed to ada-phone on try 3" in out.stdout
