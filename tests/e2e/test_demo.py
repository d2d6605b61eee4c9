"""`make run`'s demo, driven end to end: every printed curl gets the answer
the demo says it will."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import harness

REPO = Path(__file__).resolve().parents[2]


def test_every_demo_request_gets_the_answer_the_demo_prints():
    harness.require_envoy()
    harness.require_wasm()
    harness.require_cli()
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--smoke"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    lines = [l for l in out.splitlines() if l.startswith("smoke:")]
    assert len(lines) >= 10, out[-4000:]
    assert all(l.startswith("smoke: ok") for l in lines), "\n".join(lines)
    # The staff member's e-mail reaches the web shop; the learner's never does.
    assert "x-mpass-email: maarit.nieminen%40testikunta.example.fi" in out
    assert out.count("x-mpass-email") == 1, out
