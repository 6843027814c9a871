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
#: Where the seconds each test file took in the last run of the whole suite are kept (pytest's cache,
#: ``.pytest_cache``): the next run starts the longest files first.
FILE_SECONDS = "fewshot/file_seconds"


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


def whole_suite(config: pytest.Config) -> bool:
    """Whether this run is of every test: no file, test, ``-k`` or ``-m`` chosen."""
    chosen = config.args and [Path(a).resolve() for a in config.args] != [ROOT / "tests"]
    return not chosen and not config.option.keyword and not config.option.markexpr


def pytest_configure(config: pytest.Config) -> None:
    """Once this suite's test cluster has left its /etc/slurm/slurm.conf behind, a controller that does not
    answer costs every Snakemake start 9 s (the SLURM executor plugin asks it, ``scontrol show config``, on
    import): then, for a run of the whole suite (the SLURM test among it), start the test cluster before any
    test, in the main process (not in each xdist worker). Another machine's SLURM, or a run of chosen files,
    is left alone."""
    ours = SLURM_CONF.exists() and "ClusterName=fewshot-test" in SLURM_CONF.read_text(errors="replace")
    if not hasattr(config, "workerinput") and whole_suite(config) and ours:
        start_slurm_test_cluster()


#: The fixtures that run the workflow: a test that asks for one is marked ``workflow`` (``make test-fast``
#: leaves those out).
WORKFLOW_FIXTURES = {"tiny_run", "snakemake", "side_by_side"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that run the workflow (through one of :data:`WORKFLOW_FIXTURES`) ``workflow``. Order
    the files longest first, a file's tests keeping their order: by the seconds each took in the last run of
    the whole suite; a file without that record (a new one, or every file in a fresh clone) first, by its
    number of ``workflow`` tests, then of tests (pytest-xdist's own order). With ``--no-loadscope-reorder``
    each xdist worker takes the next file in this order when it is free, so no long file starts last."""
    for item in items:
        if WORKFLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.workflow)
    cache = getattr(config, "cache", None)  # none under -p no:cacheprovider
    seconds = cache.get(FILE_SECONDS, {}) if cache is not None else {}
    runs, tests = {}, {}
    for item in items:
        runs[item.path.name] = runs.get(item.path.name, 0) + (item.get_closest_marker("workflow") is not None)
        tests[item.path.name] = tests.get(item.path.name, 0) + 1
    items.sort(key=lambda item: (item.path.name in seconds, -seconds.get(item.path.name, 0),
                                 -runs[item.path.name], -tests[item.path.name]))


#: Each test file's seconds in this run (its tests' setup, call and teardown).
TOOK: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each test file's seconds (under xdist: in the main process, which every worker's reports reach)."""
    name = Path(report.nodeid.split("::")[0]).name
    TOOK[name] = TOOK.get(name, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """After a run of the whole suite, keep each file's seconds for the next run's order."""
    config, cache = session.config, getattr(session.config, "cache", None)
    if cache is not None and not hasattr(config, "workerinput") and whole_suite(config) and TOOK:
        cache.set(FILE_SECONDS, {**cache.get(FILE_SECONDS, {}), **{k: round(v, 1) for k, v in TOOK.items()}})


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


def fewshot_command(shellcmd: str) -> tuple[list[str], str]:
    """The ``fewshot`` arguments and the log file of a job's shell command as the workflow writes it
    (``[VAR=value] fewshot <stage> ... > <log> 2>&1``)."""
    import shlex

    words = shlex.split(shellcmd)
    end = words.index(">")
    return words[words.index("fewshot") + 1:end], words[end + 1]


def job_arguments(work: Path, output: str) -> list[str]:
    """The ``fewshot`` arguments of the job that made ``output`` (a path relative to ``work``) in the workflow
    run in ``work``, as Snakemake recorded its command (``.snakemake/metadata``)."""
    import base64
    import json

    name = base64.urlsafe_b64encode(output.encode()).decode()
    return fewshot_command(json.loads((work / ".snakemake" / "metadata" / name).read_text())["shellcmd"])[0]


def run_job_in_process(work: Path, output: str) -> tuple[int, str]:
    """Run again, in this process and in ``work``, the job that made ``output`` there (its exact command
    line, through ``fewshot_core.cli.main``): its exit status and what it wrote to standard error, which the
    workflow writes to the job's log. One Snakemake start less than running it through the workflow."""
    import contextlib
    import io
    import signal

    from fewshot_core import cli

    err, handler = io.StringIO(), signal.getsignal(signal.SIGTERM)
    with contextlib.chdir(work), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.main(job_arguments(work, output))
            code = 0
        except SystemExit as stop:
            code = stop.code
        finally:
            signal.signal(signal.SIGTERM, handler)  # the command's own, for a job's process: not the tests'
    return code, err.getvalue()


def refusal(work: Path, config: dict) -> str:
    """The message with which the check the Snakefile makes before any job (``load_settings_or_exit``, run in
    the workflow's folder ``work`` on ``config`` as read back from its file) stops the run; an AssertionError
    if it accepts the configuration. In this process: one Snakemake start less than the run it stands for."""
    import contextlib

    from fewshot_core.checks import load_settings_or_exit

    (work / "config.yaml").write_text(yaml.safe_dump(config))
    with contextlib.chdir(work):
        try:
            load_settings_or_exit(yaml.safe_load((work / "config.yaml").read_text()), ["config.yaml"])
        except SystemExit as stop:
            message = str(stop.code)
            assert message.startswith("Configuration error: ") and "Nothing was run" in message, message
            return message
    raise AssertionError("the check before any job accepted the configuration")


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
