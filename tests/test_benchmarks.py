"""The benchmark scripts run (on small sizes) and print each figure beside what it is compared against."""

import subprocess
import sys

from tests.conftest import ENV, ROOT


def test_the_gpu_script_runs_and_prints_a_line_per_figure():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick", "--device", "cpu"],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum("supernet" in line and "images/s" in line for line in lines) == 2
    assert sum(line.startswith("split of edge 0") for line in lines) == 11
    assert sum(line.startswith("one leaf epoch") for line in lines) == 2


def test_the_restore_cost_script_compares_with_a_deep_copy():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "restore_cost.py"), "--C", "4", "--N", "1",
                           "--size", "8", "--repeats", "3"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0 and "deep copy" in proc.stdout and "restore" in proc.stdout, proc.stderr[-2000:]


def test_the_split_cost_history_script_times_both_sides_and_compares_their_values():
    """Against HEAD the two sides run the same code: every metric's similarity matrices must agree
    exactly (when the package has no uncommitted change)."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "split_cost_history.py"), "--against", "HEAD",
                           "--C", "2", "--N", "1", "--size", "8", "--batch", "8", "--ntk-batch", "4", "--rounds", "1"],
                          capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    from fewshot_core.metrics import REGISTRY

    names = [r[0].strip() for r in rows]
    assert names == sorted(set(REGISTRY) - {"random"}) + ["all"], proc.stdout
    unchanged = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "fewshot_core"], cwd=ROOT).returncode == 0
    for name, old, new, speedup, diff in rows[:-1]:
        assert float(old.split()[0]) > 0 and float(new.split()[0]) > 0 and speedup.strip().endswith("x")
        assert not unchanged or float(diff) == 0.0, (name, diff)
