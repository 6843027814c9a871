"""Shared test fixtures: the scenarios in .test/config/, a Snakemake runner, the default settings."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER") is not None:
    # Two test processes on two cores: one torch thread each (before torch is imported), or their thread
    # pools spin against each other; the workflow's jobs set their own (OMP_NUM_THREADS={threads}).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
SCENARIOS = ROOT / ".test" / "config"
#: Test files, the longest first (seconds of one `make test`, BENCHMARKS.md): with `--no-loadscope-reorder`
#: each test process takes the next file in this order when it is free, so no long file starts last.
LONGEST_FIRST = ("test_workflow.py", "test_faults.py", "test_faults_files.py", "test_readme.py", "test_freshness.py",
                 "test_custom_metrics.py", "test_benchmark.py", "test_slurm.py", "test_metrics.py")


def start_slurm_test_cluster() -> str | None:
    """Start the single-node SLURM of ``tests/slurm/start_cluster.sh`` (nothing when it already answers);
    None when it runs, otherwise why it cannot (the SLURM test is skipped with that reason)."""
    missing = [t for t in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(t) and
               not Path("/usr/sbin", t).exists()]
    if missing:
        return (f"SLURM test cluster not available: {', '.join(missing)} not installed "
                "(apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        return "starting the SLURM test cluster needs root"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm not installed"
    proc = subprocess.run(["bash", str(ROOT / "tests" / "slurm" / "start_cluster.sh")], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"the SLURM test cluster did not start: {proc.stderr.strip()[-500:]}"


SLURM_CONF = Path("/etc/slurm/slurm.conf")


def pytest_configure(config: pytest.Config) -> None:
    """Once this suite's test cluster has left its /etc/slurm/slurm.conf behind, a controller that does not
    answer costs every Snakemake start 9 s (the SLURM executor plugin asks it, ``scontrol show config``, on
    import): then, for a run of the whole suite (the SLURM test among it), start the test cluster before any
    test, in the main process (not in each xdist worker). Another machine's SLURM, or a run of chosen files,
    is left alone."""
    whole_suite = not config.args or [Path(a).resolve() for a in config.args] == [ROOT / "tests"]
    ours = SLURM_CONF.exists() and "ClusterName=fewshot-test" in SLURM_CONF.read_text(errors="replace")
    if not hasattr(config, "workerinput") and whole_suite and ours:
        start_slurm_test_cluster()


#: The fixtures that run the workflow: a test that asks for one is marked ``workflow`` (``make test-fast``
#: leaves those out).
WORKFLOW_FIXTURES = {"tiny_run", "snakemake", "side_by_side"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files as ``LONGEST_FIRST``, then the others as collected; a file's tests keep their order.
    Mark the tests that run the workflow (through one of :data:`WORKFLOW_FIXTURES`) ``workflow``."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    for item in items:
        if WORKFLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.workflow)


def load_scenario(name: str) -> dict:
    """A fresh copy of the scenario ``.test/config/<name>.yaml``."""
    return yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())


def edited(config: dict, key: str, value) -> dict:
    """A copy of ``config`` with the dotted ``key`` (``training.leaves.epochs``) set to ``value``."""
    out = copy.deepcopy(config)
    *path, last = key.split(".")
    node = out
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def _command(workdir: Path, config: dict | None, args: tuple[str, ...], cores: int) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), *args]
    if config is not None:  # last: --configfile takes every word after it
        cfg = workdir / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(cfg)]
    return cmd


ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _checked(proc: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_snakemake(workdir: Path, config: dict | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with ``config`` written to ``workdir/config.yaml`` (None: no
    --configfile, so the default configuration); an AssertionError with the log tail on failure."""
    proc = subprocess.run(_command(workdir, config, args, 2), capture_output=True, text=True, env=ENV)
    return _checked(proc, check)


def run_snakemake_side_by_side(runs: list[tuple[Path, dict, tuple[str, ...]]]) -> list[subprocess.CompletedProcess]:
    """Several runs at once, one core each (the tests' runs are mostly chains of single jobs)."""
    procs = [subprocess.Popen(_command(w, c, a, 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for w, c, a in runs]
    done = []
    for p in procs:
        out, err = p.communicate()
        done.append(_checked(subprocess.CompletedProcess(p.args, p.returncode, out, err), True))
    return done


@pytest.fixture(scope="session")
def scenario() -> Callable[[str], dict]:
    return load_scenario


@pytest.fixture
def tiny() -> dict:
    return load_scenario("tiny")


@pytest.fixture(scope="session")
def snakemake() -> Callable[..., subprocess.CompletedProcess]:
    return run_snakemake


@pytest.fixture(scope="session")
def side_by_side() -> Callable[..., list[subprocess.CompletedProcess]]:
    return run_snakemake_side_by_side


@pytest.fixture(scope="session")
def edit() -> Callable[[dict, str, object], dict]:
    return edited


@pytest.fixture(scope="session")
def defaults():
    """The run settings of a configuration that sets nothing it need not: the schema's defaults."""
    from fewshot_core.checks import load_settings

    return load_settings({"run": "defaults", "seeds": [0], "metrics": {"snip": {}}})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny scenario run to completion once per test run: every output, the study included.

    Under pytest-xdist (`make test`) the first worker to ask runs it, under a lock, in the folder the
    workers share; every worker then works on its own copy, Snakemake's records included."""
    work = tmp_path_factory.mktemp("wf")
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        run_snakemake(work, load_scenario("tiny"))
        return work
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "tiny_run"
    done = shared.with_name("tiny_run.done")
    with FileLock(str(shared.with_name("tiny_run.lock"))):
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            run_snakemake(shared, load_scenario("tiny"))
            done.touch()
    shutil.copytree(shared, work, symlinks=True, dirs_exist_ok=True)
    return work
