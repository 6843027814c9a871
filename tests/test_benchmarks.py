"""The benchmark scripts run (on small sizes) and print each figure beside what it is compared against."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ENV, ROOT

#: Each test runs a benchmark script in a process of its own, as costly as a workflow run (about a quarter of
#: the time of the tests that run none): ``make test-fast`` leaves them out with the workflow's.
pytestmark = pytest.mark.workflow


def test_the_gpu_script_runs_and_prints_a_line_per_figure():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "figures", "--quick", "--device", "cpu"],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum("supernet" in line and "xautodl's supernet" in line and "x)" in line for line in lines) == 2
    assert sum(line.startswith("split of edge 0") for line in lines) == 11
    assert sum(line.startswith("one leaf epoch") for line in lines) == 3
    assert sum(line.startswith("host waits") for line in lines) == 1
    assert sum(line.startswith("one architecture's evaluation") for line in lines) == 1


def test_the_gpu_comparison_reads_a_workflow_run(tiny_run):
    """A run against itself: every split identical, every value and accuracy equal (tests/test_gpu_check.py
    plants near-ties and differences)."""
    run = tiny_run / "results" / "tiny"
    same = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "compare", str(run), str(run)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert same.returncode == 0 and "splits: 12 of 12 identical; 0 near-tie(s)" in same.stdout, same.stderr[-2000:]
    assert "snip: over" in same.stdout and "leaves: " in same.stdout and "0 differ" in same.stdout


def test_the_restore_cost_script_compares_with_a_deep_copy():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "restore_cost.py"), "--C", "4", "--N", "1",
                           "--size", "8", "--repeats", "3"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0 and "deep copy" in proc.stdout and "restore" in proc.stdout, proc.stderr[-2000:]


def test_the_split_cost_history_script_times_both_sides_and_compares_their_values(tmp_path):
    """Against a copy of this package the two sides run the same code: every metric's similarity matrices
    must agree exactly, whatever the checkout's uncommitted edits."""
    shutil.copytree(ROOT / "fewshot_core", tmp_path / "fewshot_core", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "split_cost_history.py"), "--against", str(tmp_path),
                           "--C", "2", "--N", "1", "--size", "8", "--batch", "8", "--ntk-batch", "4", "--rounds", "1"],
                          capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    from fewshot_core.metrics import REGISTRY

    names = [r[0].strip() for r in rows]
    assert names == sorted(set(REGISTRY) - {"random"}) + ["all"], proc.stdout
    for name, old, new, speedup, diff in rows[:-1]:
        assert float(old.split()[0]) > 0 and float(new.split()[0]) > 0 and speedup.strip().endswith("x")
        assert float(diff) == 0.0, (name, diff)
