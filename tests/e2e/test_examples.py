"""docs/examples/mem0_quickstart.py runs as a newcomer runs it: a process, against a live gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.config import load_settings
from tests.support.server import live_server

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "mem0_quickstart.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300, env=env)


def first_answers(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return [lines[i + 1].split(None, 1)[1] for i, line in enumerate(lines) if " asks " in line]


def test_mem0_quickstart_example(wide_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(engines={"hf": {"model": str(wide_dir), "device": "cpu"}})
    with live_server(settings) as server:
        db = str(tmp_path / "quickstart.db")
        sym = run("--gateway", server.url, "--db", db, "--dims", "256")
        again = run("--gateway", server.url, "--db", db, "--dims", "256")  # idempotent: starts clean
        asym = run("--gateway", server.url, "--db", str(tmp_path / "asym.db"), "--asymmetric")
    for out in (sym, again, asym):
        assert out.returncode == 0, out.stdout + out.stderr
    assert "alice: 3 memories stored" in again.stdout and "bob: 2 memories stored" in again.stdout, again.stdout
    assert first_answers(sym.stdout) == [
        "likes coffee in the morning", "allergic to peanuts, vegetarian", "travel to paris on weekend"
    ], sym.stdout
    assert len(first_answers(asym.stdout)) == 3, asym.stdout
