"""The scripts in examples/python run against a fresh daemon and print what the docs show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, start_daemon

EXAMPLES = REPO_ROOT / "examples" / "python"


def run_example(workdir: Path, name: str) -> list:
    daemon = start_daemon(workdir, f"example-{name}")
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / name), daemon.grpc_addr],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_quickstart(workdir: Path) -> None:
    lines = run_example(workdir, "quickstart.py")
    assert lines[0].startswith("health: healthy ")
    assert lines[1:] == [
        "put_many: 2 written",
        "france incoming edges: [('paris', 'capital_of')]",
        "query: paris score=1.497 path=['paris']",
        "query: france score=1.460 path=['france']",
        "trace id echoed: py-1",
        "scan: ['france', 'paris']",
        "traverse: ['paris', 'france']",
        "wrong dimension: InvalidArgument - vector dimension mismatch: expected 3, got 2",
    ]


def test_langchain_store(workdir: Path) -> None:
    lines = run_example(workdir, "langchain_store.py")
    assert lines == [
        "added: ['paris', 'berlin', 'louvre']",
        "similar: paris 1.354 atlas",
        "similar: berlin 1.236 atlas",
        "with hops=1: paris 1.354 path=['paris']",
        "with hops=1: louvre 1.000 path=['paris', 'louvre']",
        "retriever: ['The Louvre museum holds the Mona Lisa.']",
    ]
