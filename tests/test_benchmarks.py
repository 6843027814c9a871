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
