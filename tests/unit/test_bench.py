"""The benchmarks start as documented: ``python bench/NAME.py`` and ``scripts/bench.sh NAME``.

Only their argument parsing runs here (``--help``): the benchmarks themselves are slow and start
daemons; what they measure is in docs/benchmarks.md, not asserted by tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.stem for p in (ROOT / "bench").glob("[a-z]*.py"))


def test_every_benchmark_is_found() -> None:
    assert {"mailpath", "delivery", "operator_load", "images"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_runs_as_a_script_from_any_folder(name: str, tmp_path: Path) -> None:
    # From another folder, as a script: bench/ is first on sys.path then, so a module there named
    # like a standard one (bench/operator.py did) would shadow it and fail at import.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_bench_command_runs_each_benchmark(name: str) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "bench.sh"), name, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"usage: {name}.py" in done.stdout


def test_the_bench_command_names_the_benchmarks() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "bench.sh")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert all(name in done.stderr for name in BENCHMARKS)
