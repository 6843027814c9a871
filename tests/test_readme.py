"""Every command the README shows runs as written: the long ones as a dry run (`--dry-run` right after
`snakemake`, `make -n`, `--help` for the benchmark scripts, `--collect-only` for a test selection), in a
copy of the checkout that has CIFAR-10's folder, NAS-Bench-201's archive and finished runs where the
commands expect them. A command of a new form fails this test until it says how it is run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ENV, ROOT

README = (ROOT / "README.md").read_text()
#: The README and the pages its parts moved to: every command each shows runs.
PAGES = [ROOT / "README.md", ROOT / "config" / "README.md", ROOT / "docs" / "study.md", ROOT / "docs" / "reliability.md"]
STARTS = ("make ", "snakemake", ".venv/bin/", "fewshot ", "pytest ", "python ", "bash ")


def commands(text: str | None = None) -> list[str]:
    """Every line of a ``bash`` block, and every inline code span outside a table that starts like a command,
    in ``text`` (by default every page of :data:`PAGES`)."""
    if text is None:
        return list(dict.fromkeys(c for page in PAGES for c in commands(page.read_text())))
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line:
                found.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for line in prose.splitlines():
        if not line.lstrip().startswith("|"):
            found += [c for c in re.findall(r"`([^`]+)`", line) if c.startswith(STARTS)]
    return list(dict.fromkeys(found))


def as_run(command: str) -> list[str] | None:
    """The command as this test runs it (a dry run for the long ones); None for one run elsewhere."""
    words = shlex.split(command)
    tool = os.path.basename(words[0])
    if "--report" in words:
        return None  # makes a report of a finished run: test_workflow's report test runs it on the tiny run
    if tool == "snakemake":
        return [*words[:1], "--dry-run", *words[1:]]
    if tool == "make":
        return ["make", "-n", *words[1:]]
    if tool == "bash":
        return ["bash", "-n", *words[1:]]  # a script for another machine (the GPU check): its syntax
    if tool == "python" and words[1].startswith("benchmarks/"):
        return [sys.executable, *words[1:], "--help"]
    if tool == "pytest":
        return [sys.executable, "-m", "pytest", *words[1:], "--collect-only", "-q"]
    if tool in ("fewshot", "pip"):
        return words
    raise AssertionError(f"the README shows {command!r}: say in tests/test_readme.py how it is run")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, tiny_run):
    """A copy of the checkout, with .venv linked, CIFAR-10's folder, NAS-Bench-201's archive, and the tiny run's
    results where the README's summaries look (results/default, results/study, results/study_fashion)."""
    from tests.benchmark_archive import write_complete_archive

    work = tmp_path_factory.mktemp("readme")
    for part in ("workflow", "profiles", "config", "benchmarks", "tests", "fewshot_core", ".test"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("Snakefile", "Makefile", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, work / part)
    shutil.copytree(ROOT / "docs", work / "docs")
    (work / ".venv").symlink_to(ROOT / ".venv" if (ROOT / ".venv").exists() else os.path.dirname(
        os.path.dirname(sys.executable)))
    (work / "data" / "cifar10" / "cifar-10-batches-bin").mkdir(parents=True)
    pytest.importorskip("nats_bench", reason="nats_bench (a dependency) is not installed")
    write_complete_archive(work / "data" / "NATS-tss-v1_0-3ffb9-simple")
    for run in ("default", "study", "study_fashion", "paper_cpu"):
        shutil.copytree(tiny_run / "results" / "tiny", work / "results" / run)
    return work


def test_the_readme_opens_with_its_two_commands():
    """The first code block: one command that sets up and runs the default workflow, one that sets up and
    runs the tests, the one CI runs (.ci/run)."""
    first = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in first.splitlines() if line.split("#")[0].strip()]
    assert lines == ["make run", "make lint test"]
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("\nmake lint test")
    assert len(commands()) > 10


#: Options that do not change what a dry run builds or checks (how many cores, the resources to share out):
#: Snakemake's own parser reads them in every command, and commands that differ only in them and in their
#: targets share one dry run.
DAG_NEUTRAL = ("targets", "cores", "resources", "dryrun")


def dry_run_group(run: list[str]) -> str | None:
    """What decides a Snakemake dry run's DAG: every option as Snakemake's own parser reads it but the
    :data:`DAG_NEUTRAL` ones (an option it does not know fails the parse, so the test), and whether it names
    targets; None for another command."""
    if os.path.basename(run[0]) != "snakemake":
        return None
    from snakemake.cli import get_argument_parser

    args = vars(get_argument_parser().parse_args(run[1:]))
    options = sorted((k, repr(getattr(v, "__dict__", v))) for k, v in args.items() if k not in DAG_NEUTRAL)
    return repr([*options, ("default target", not args["targets"])])  # no target: the workflow's first rule


def targets(run: list[str]) -> list[str]:
    from snakemake.cli import get_argument_parser

    return list(get_argument_parser().parse_args(run[1:]).targets)


def grouped_dry_runs() -> dict[str, list[str]]:
    """One dry run per distinct DAG: the first command of each group with every target its group names
    (the union of their DAGs), so a configuration the README shows four times is built once."""
    groups: dict[str, list[list[str]]] = {}
    for command in commands():
        run = as_run(command)
        if run is not None and (key := dry_run_group(run)) is not None:
            groups.setdefault(key, []).append(run)
    merged = {}
    for key, runs in groups.items():
        first, wanted = runs[0], list(dict.fromkeys(t for r in runs for t in targets(r)))
        own = set(targets(first))
        words = [w for w in first[1:] if w not in own]
        merged[key] = [first[0], *wanted, *words]  # targets first: --configfile takes every word after it
        assert dry_run_group(merged[key]) == key and targets(merged[key]) == wanted, merged[key]
    return merged


def run_in_checkout(checkout, run: list[str]) -> subprocess.CompletedProcess:
    env = {**ENV, "PATH": f"{checkout / '.venv' / 'bin'}{os.pathsep}{ENV['PATH']}", "PYTHONPATH": str(checkout)}
    return subprocess.run(run, cwd=checkout, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def dry_runs(checkout):
    """Each group's dry run, made when a test first asks for it."""
    merged, done = grouped_dry_runs(), {}

    def result(key: str) -> subprocess.CompletedProcess:
        if key not in done:
            done[key] = run_in_checkout(checkout, merged[key])
        return done[key]

    return result


@pytest.mark.parametrize("command", commands())
def test_every_readme_command_runs_as_written(checkout, dry_runs, command):
    """A Snakemake command: the dry run of its group (:func:`grouped_dry_runs`), which builds the DAG of
    each of its targets under its options, as the command alone would."""
    run = as_run(command)
    if run is None:
        pytest.skip("run by test_workflow.py::test_report_is_self_contained_and_renders")
    key = dry_run_group(run)
    proc = run_in_checkout(checkout, run) if key is None else dry_runs(key)
    assert proc.returncode == 0, f"{command} ({shlex.join(proc.args)}):\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr
