"""The start-up check's one reach into Snakemake (fewshot_core/snakemake_hook.py), against the installed
Snakemake: the hook sees the requested targets and what it adds to ``--forcerun`` is rerun."""

import subprocess
import sys

import pytest

from tests.conftest import ENV

SNAKEFILE = '''
import sys
from fewshot_core.snakemake_hook import when_the_dag_is_built

def seen(settings):
    print("targets:", sorted(settings.targets), file=sys.stderr)
    settings.forcerun = frozenset({*settings.forcerun, "made.txt"})

when_the_dag_is_built(workflow, seen)

rule made:
    output: "made.txt"
    shell: "echo again > {output}"
'''


@pytest.mark.workflow
def test_the_hook_sees_the_targets_and_forces_what_it_adds(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "made.txt").write_text("first\n")  # complete, and Snakemake has no record of it
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "made.txt"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "targets: ['made.txt']" in proc.stderr
    assert (tmp_path / "made.txt").read_text() == "again\n"  # forced: made again


def test_a_snakemake_it_was_not_checked_against_is_refused_in_one_line(monkeypatch):
    import snakemake

    from fewshot_core import snakemake_hook

    monkeypatch.setattr(snakemake, "__version__", "10.0.0")
    with pytest.raises(snakemake_hook.HookError, match="Snakemake 10.0.0 is not one"):
        snakemake_hook.when_the_dag_is_built(object(), print)
