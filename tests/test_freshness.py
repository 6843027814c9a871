"""Every output's key checked at every start against the one the settings and the code give it
(fewshot_core/freshness.py), with or without Snakemake's own records in ``.snakemake``."""

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from fewshot_core import artifacts, freshness, stages
from fewshot_core.checks import load_settings
from fewshot_core.digests import of_code as source_digest
from fewshot_core.errors import ArtifactError
from fewshot_core.outputs import OUTPUTS
from tests.conftest import ENV, ROOT, edited, load_scenario, run_snakemake

TINY = load_scenario("tiny")
#: One setting changed, upstream of everything: every output of this run differs from the tiny run's. One seed
#: and one metric: the test copies each kind's first file (seed 0, snip), so the rest would go unread.
OTHER = edited(edited(edited(TINY, "data.val_fraction", 0.25), "seeds", [0]), "metrics", {"snip": TINY["metrics"]["snip"]})


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """``OTHER`` made (another validation share: every spec differs), with the study set of the tiny scenario
    with a study set of another size (the study set does not depend on the data), made in this process by
    the stage its job runs."""
    from fewshot_core import stages

    work = tmp_path_factory.mktemp("other")
    run_snakemake(work, OTHER)
    stages.sample_study_set(load_settings(edited(TINY, "study.archs", 5)).study_set_spec(),
                            work / "results" / "tiny" / "study" / "archs.json", log=print)
    return work


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of the tiny run with the tiny scenario as its configuration file (the dry runs of other tests
    leave theirs in the tiny run's folder)."""
    shutil.copytree(tiny_run, tmp_path / "run")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(TINY))
    return tmp_path / "run"


def dry_run(work, config=TINY, *args):
    proc = run_snakemake(work, config, "--dry-run", *args)
    return proc.stdout, proc.stderr


TINY_KINDS = list(dict.fromkeys(k for k, _ in load_settings(TINY).outputs()))


def test_a_file_of_every_kind_made_by_other_settings_is_scheduled_again_at_start(run_copy, other_run):
    """Every kind of output: another run's file at this run's path is found by its own record and its job
    scheduled again through its stamp, with Snakemake's records of the run intact (they know nothing of the
    copies)."""
    settings = load_settings(TINY)
    paths = {kind: OUTPUTS[kind].path("results/tiny", **next(i for k, i in settings.outputs() if k == kind))
             for kind in TINY_KINDS}
    for path in paths.values():
        shutil.copy(other_run / path, run_copy / path)
    found = {f.path for f in freshness.check(settings, run_copy)}
    assert set(paths.values()) <= found
    out, err = dry_run(run_copy)
    assert "made with other settings" in err, err
    jobs = [j for j in out.split("\n\n") if "rule " in j]
    for kind, path in paths.items():  # the job that makes each copied file runs again
        assert any(f"output: {path}" in j or f", {path}" in j or f"{path}," in j for j in jobs), (kind, path)
    holdouts = [j for j in jobs if "rule make_holdout" in j]  # a job without other inputs reruns by its stamp
    assert holdouts and all("Updated input files: results/tiny/.stamps/data/holdout_seed" in j for j in holdouts)


def test_the_reader_of_a_file_made_by_other_settings_names_the_field(other_run, tiny_run):
    """Where a copy reaches a job (placed after the start-up check), the job refuses it: the key differs."""
    theirs = other_run / "results" / "tiny" / "snip" / "seed0" / "scores_L0.parquet"
    ours = artifacts.read_record(tiny_run / "results" / "tiny" / "snip" / "seed0" / "scores_L0.parquet", "parquet")
    want = artifacts.expect(OUTPUTS["scores"], "tiny", ours["key"], metric="snip", seed=0, level=0)
    with pytest.raises(ArtifactError, match=r"scores_L0.parquet: provenance field 'key' is '\w+', expected"):
        artifacts.read_table(theirs, want)


def test_a_remade_file_equals_the_original(run_copy, other_run, tiny_run):
    """Remade, the scores table's values are the original's and its timing column is not: keys do not
    depend on content, and the split files made again from it are the same bytes, so nothing after them
    reruns."""
    path = "results/tiny/snip/seed0/scores_L0.parquet"
    shutil.copy(other_run / path, run_copy / path)
    proc = run_snakemake(run_copy, TINY, "splits")
    assert "snip/seed0: 1 file made with other settings (val_fraction 0.25 -> 0.2): remade where the targets need them" in proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(run_copy / path).drop(columns="seconds"),
                                  pd.read_parquet(tiny_run / path).drop(columns="seconds"))
    out, err = dry_run(run_copy)
    assert "Nothing to be done" in out and "made with" not in err, out[-3000:]


def test_without_snakemakes_records_a_changed_metric_reruns_that_metric_alone(run_copy):
    shutil.rmtree(run_copy / ".snakemake")
    out, err = dry_run(run_copy)
    assert "Nothing to be done" in out and "other settings" not in err  # changing nothing reruns nothing
    out, err = dry_run(run_copy, edited(TINY, "metrics.synflow.batch_size", 8))
    assert "synflow/seed0: 2 files made with other settings (batch_size 16 -> 8): remade where the targets need them" in err
    assert "synflow/seed0: 6 files made from inputs made by other settings or code" in err
    assert "synflow (training-free): 2 files made with other settings (batch_size 16 -> 8): remade where the targets need them" in err
    assert "metric=synflow" in out and "metric=snip" not in out
    for rule in ("make_holdout", "train_root", "train_standalone", "train_oneshot", "sample_study_set"):
        assert f"rule {rule}:" not in out, rule
    for rule in ("compute_split_distances", "collect_leaves", "evaluate_study", "rank_study", "draw_figures"):
        assert f"rule {rule}:" in out, rule  # what reads the metric's files
    # A target remakes only the stale files it needs: each has its own stamp, followed where the target leads.
    out, err = dry_run(run_copy, edited(TINY, "metrics.synflow.batch_size", 8), "results/tiny/synflow/seed0/split_L1.json")
    assert "synflow/seed0: 2 files made with other settings" in err
    jobs = [j for j in out.split("\n\n") if "rule " in j]
    assert sorted(re.findall(r"rule (\w+):", out)) == ["score_edges", "score_edges", "split_nodes", "split_nodes"]
    assert all("metric=synflow, seed=0" in j for j in jobs), jobs


def test_result_neutral_settings_rerun_nothing(run_copy):
    """Both settings changed at once: each alone reruns nothing exactly when the two together rerun nothing
    (a rerun either caused would be scheduled with both), so one dry run stands for the two."""
    neutral = edited(edited(TINY, "device", "auto"), "data.download", True)
    out, err = dry_run(run_copy, neutral)
    assert "Nothing to be done" in out, out[-2000:]
    shutil.rmtree(run_copy / ".snakemake")
    out, err = dry_run(run_copy, neutral)
    assert "Nothing to be done" in out and "other settings" not in err


@pytest.fixture
def edited_checkout(tmp_path):
    """A copy of the workflow and the package whose min-cut is turned into a max-cut."""
    checkout = tmp_path / "checkout"
    for part in ("workflow", "profiles", "fewshot_core"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Snakefile", checkout / "Snakefile")
    source = (checkout / "fewshot_core" / "splitting.py").read_text()
    assert "costs <= costs.min() + tol" in source
    (checkout / "fewshot_core" / "splitting.py").write_text(
        source.replace("costs <= costs.min() + tol", "costs >= costs.max() - tol"))
    return checkout


def test_an_edited_core_module_reruns_what_its_stages_reach_and_no_more(run_copy, edited_checkout):
    def dry(*extra):
        cmd = [sys.executable, "-m", "snakemake", "-s", str(edited_checkout / "Snakefile"), "--directory",
               str(run_copy), "--cores", "1", "--dry-run", "--configfile", str(run_copy / "config.yaml"), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=edited_checkout,
                              env={**ENV, "PYTHONPATH": str(edited_checkout)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    proc = dry()
    assert "made by other code (splitting.py changed since)" in proc.stderr, proc.stderr
    for rule in ("score_edges", "split_nodes", "train_leaves", "evaluate_study", "rank_study"):
        assert f"rule {rule}:" in proc.stdout, rule
    for rule in ("make_holdout", "train_root", "train_standalone", "train_oneshot", "sample_study_set", "score_study",
                 "evaluate_oneshot"):
        assert f"rule {rule}:" not in proc.stdout, rule


def test_a_docstring_or_comment_is_not_a_code_change(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text('"""One thing."""\n\n\ndef f(x):\n    """Twice x."""\n    return 2 * x  # doubled\n')
    b.write_text('"""Another."""\n\n\ndef f(x):\n    return 2 * x\n')
    assert source_digest(a) == source_digest(b)
    b.write_text('def f(x):\n    return 3 * x\n')
    assert source_digest(a) != source_digest(b)


def test_the_start_up_check_reads_records_only(tiny_run, tmp_path):
    """It never imports torch, and it finds nothing in a run made by this configuration."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    code = ("import sys; from fewshot_core import freshness; from fewshot_core.checks import load_settings; "
            f"import yaml; s = load_settings(yaml.safe_load(open({str(tmp_path / 'config.yaml')!r}))); "
            f"print(len(freshness.check(s, {str(tiny_run)!r})), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV).stdout
    assert out.split() == ["0", "False"]


def test_summary_names_a_ranking_made_from_other_trees_as_stale(run_copy):
    """The trees remade by other settings (`snakemake splits`): the ranking made from the old ones is named,
    through the chain of keys (ranking, study tables, leaves, splits), and not shown."""
    run_snakemake(run_copy, edited(TINY, "metrics.snip.batch_size", 8), "splits")
    out = subprocess.run([sys.executable, "-m", "fewshot_core.cli", "summary", str(run_copy / "results" / "tiny")],
                         capture_output=True, text=True, check=True).stdout
    assert "Ranking study: not shown: " in out and "ranking.parquet (it was made from " in out, out
    assert "Kendall" not in out  # the old ranking is not shown beside the new splits


def test_a_table_of_another_run_is_refused_by_summary(run_copy):
    path = run_copy / "results" / "tiny" / "split_distance.parquet"
    table = pd.read_parquet(path)
    record = artifacts.read_record(path, "parquet")
    artifacts.write_table(table, path, {**record, "run": "other"})
    proc = subprocess.run([sys.executable, "-m", "fewshot_core.cli", "summary", str(run_copy / "results" / "tiny")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "split_distance.parquet: provenance field 'run'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_record_names_its_run_identity_key_and_code(tiny_run):
    settings = load_settings(TINY)
    for kind, identity in settings.outputs():
        path = tiny_run / OUTPUTS[kind].path("results/tiny", **identity)
        record = artifacts.read_record(path, OUTPUTS[kind].format)
        assert record["kind"] == kind and record["run"] == "tiny", path
        assert {k: record[k] for k in identity} == identity, path
        assert record["settings"]["run"] == "tiny" and len(record["key"]) == 16, path
        assert f"stages.{OUTPUTS[kind].rule}" in record["code"], path
        assert all(len(d) == 16 for d in record["code"].values()), path
    assert not freshness.check(settings, tiny_run)


def test_a_file_edited_by_hand_with_its_time_restored_is_refused_by_its_reader(tiny_run, tmp_path):
    """A split file's groups changed by hand and its modification time put back: its key still holds, so only
    its bytes can tell, and the reader compares them with the digest its record names. A table alike."""
    import json
    import os

    import pyarrow.parquet as pq

    split = tmp_path / "split_L0.json"
    shutil.copy2(tiny_run / "results" / "tiny" / "snip" / "seed0" / "split_L0.json", split)
    obj = json.loads(split.read_text())
    want = artifacts.expect(OUTPUTS["splits"], "tiny", obj["provenance"]["key"], metric="snip", seed=0, level=0)
    assert stages.read_splits(split, want)
    stat = split.stat()
    obj["splits"][0]["groups"] = obj["splits"][0]["groups"][::-1]
    split.write_text(json.dumps(obj))
    os.utime(split, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ArtifactError, match="split_L0.json: its content is not the one its record names"):
        stages.read_splits(split, want)
    table = tmp_path / "scores_L0.parquet"
    data = pq.read_table(tiny_run / "results" / "tiny" / "snip" / "seed0" / "scores_L0.parquet")
    doubled = data.set_column(data.schema.get_field_index("seconds"), "seconds",
                              pd.Series(data.column("seconds").to_pandas() * 2))
    pq.write_table(doubled, table)  # the record kept, the timing column changed
    with pytest.raises(ArtifactError, match="scores_L0.parquet: its content is not the one its record names"):
        artifacts.read_table(table, {})


def test_the_summary_names_a_ranking_made_from_a_table_since_remade(run_copy):
    """A training-free table remade (another key in its record): the summary still shows the trees, and names
    the ranking made from the old table as not shown."""
    import json

    import pyarrow.parquet as pq

    table = sorted((run_copy / "results" / "tiny" / "study" / "zero_cost").glob("*.parquet"))[0]
    data = pq.read_table(table)
    meta = dict(data.schema.metadata)
    record = json.loads(meta[artifacts.PROVENANCE_KEY])
    meta[artifacts.PROVENANCE_KEY] = json.dumps({**record, "key": "0" * 16}).encode()
    pq.write_table(data.replace_schema_metadata(meta), table)
    proc = subprocess.run([sys.executable, "-m", "fewshot_core.cli", "summary", "results/tiny"], cwd=run_copy,
                          capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0 and "Splits (metric, seed, node" in proc.stdout, proc.stderr
    assert "Ranking study: not shown: results/tiny/ranking.parquet (it was made from an input since remade or " \
        "removed)" in proc.stdout, proc.stdout


def test_a_figure_drawn_from_other_tables_is_refused_by_the_report(run_copy):
    """A figure's PNG names the keys of the tables it was drawn from: the report refuses one drawn from other
    tables than the configuration's, or one without that record, though the tables themselves are current."""
    settings = load_settings(TINY)
    png = run_copy / "results" / "tiny" / "figures" / "fig1_split_distance.png"
    refusal = lambda: freshness.report_refusal(settings, [], {"splits_table", "split_distance"},  # noqa: E731
                                               [str(png.relative_to(run_copy))], run_copy)
    assert refusal() is None
    record = artifacts.read_figure_record(png)
    assert record["made_from"] == settings.figures_spec().inputs
    old = record["made_from"]["splits"]
    png.write_bytes(png.read_bytes().replace(old.encode(), b"0" * 16))  # as if drawn from another splits table
    assert "fig1_split_distance.png was drawn from other tables" in refusal()
    shutil.copy(run_copy / "results" / "tiny" / "figures" / "trees.png", png)  # no record of its own kind
    png.write_bytes(png.read_bytes().replace(b"fewshot.provenance", b"something.else...."))
    assert "fig1_split_distance.png was drawn from other tables" in refusal()


def test_the_start_up_lines_name_damaged_files(run_copy):
    """The start-up check as the Snakefile makes it (``freshness.check``, then its lines for the files to
    remake), in this process; that Snakemake then remakes an unreadable file is
    test_faults_files.py::test_corrupt_parquet_is_named_at_start_and_remade, and that it schedules the job of
    every kind of file found: test_a_file_of_every_kind_made_by_other_settings_is_scheduled_again_at_start."""
    path = run_copy / "results" / "tiny" / "leaves.parquet"
    path.write_bytes(b"PAR1 not a table")
    findings = freshness.check(load_settings(TINY), run_copy)
    assert [f.path for f in findings] == ["results/tiny/leaves.parquet"]
    lines = freshness.report(findings)
    assert lines[0].startswith("run: 1 file unreadable or without a provenance record (results/tiny/leaves.parquet "
                               "cannot be read") and lines[0].endswith(": remade where the targets need them"), lines


# ----------------------------------------------------------------------------- computed code dependencies


def test_an_outputs_code_is_what_its_stage_reaches():
    """Computed from the stage's function: the training-free rankings are seeded from the tree module, the
    rankings alone reach the ranking module, the splitting module is never a holdout's, a root's or a ground
    truth's; the machinery (records, catalogue, settings) is no output's code; a metric's own module is in its
    scoring spec instead."""
    from fewshot_core.dependencies import UNTRACKED, metric_modules
    from fewshot_core.outputs import code_version

    code = {kind: set(code_version(o)) for kind, o in OUTPUTS.items()}
    assert {"tree", "metrics", "space"} <= code["zero_cost"]
    assert {k for k, c in code.items() if "ranking" in c} == {"ranking", "study_summary"}
    assert not {k for k, c in code.items() if "splitting" in c} & {"holdout", "root", "standalone", "oneshot",
                                                                    "pretrained", "study_set", "zero_cost"}
    assert "report" not in code["split_distance"] and "distance" in code["split_distance"]
    assert "train" in code["leaves"] and "train" not in code["splits"] and "metrics" not in code["leaves"]
    assert all(f"stages.{OUTPUTS[k].rule}" in c and not c & metric_modules() and not c & UNTRACKED
               for k, c in code.items())


def test_a_key_changes_with_its_kinds_columns_and_with_what_reads_it(monkeypatch):
    """A column added to the scores table: the scores' keys change, and so do those of everything made from
    them (through the keys their specs name), and nothing else."""
    import dataclasses

    from fewshot_core import outputs

    before = load_settings(TINY)
    keys = {(k, *i.values()): before.key(k, *i.values()) for k, i in before.outputs()}
    wider = dataclasses.replace(OUTPUTS["scores"], columns=(*OUTPUTS["scores"].columns, "note"))
    monkeypatch.setitem(outputs.OUTPUTS, "scores", wider)
    after = load_settings(TINY)
    changed = {k[0] for k, v in keys.items() if after.key(*k) != v}
    assert changed == {"scores", "splits", "leaves", "leaf_weights", "splits_table", "split_distance", "leaves_table",
                       "study", "ranking", "study_summary"}


#: Runs each job of the JSON file argv[1] ([folder, log, fewshot arguments]) in a child forked from a process
#: that has imported the libraries the jobs use but nothing of the package, and writes to argv[2] each job's
#: exit status and the package's modules it loaded: what a fresh process per job shows, without each paying
#: for torch's import.
FORK_EACH_JOB = """
import json, os, sys, traceback
import matplotlib.pyplot, numpy, pandas, pyarrow.parquet, scipy.stats, seaborn, torch, torch._dynamo, torch.func
assert not [m for m in sys.modules if m.startswith("fewshot_core")]
results = []
for folder, log, args in json.load(open(sys.argv[1])):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.chdir(folder)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            from fewshot_core import cli
            try:
                cli.main(args)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            os.write(write, json.dumps(sorted(m for m in sys.modules if m.startswith("fewshot_core."))).encode())
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        modules = json.loads(pipe.read() or "[]")
    results.append([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), modules])
json.dump(results, open(sys.argv[2], "w"))
"""


def test_every_module_a_stage_loads_when_it_runs_is_in_its_outputs_record(tiny_run, tmp_path):
    """Each rule's job of the tiny run run again on its recorded command line, each in a process of its own
    that had imported no module of the package (forked from one that imported torch and the other libraries:
    :data:`FORK_EACH_JOB`): every package module the stage loaded is in the code its output records (the
    machinery aside, and each metric's own module, which its spec carries). Not covered here:
    train_children (warm-up only) and read_benchmark (NAS-Bench-201's archive)."""
    import base64
    import json
    import re

    from fewshot_core.dependencies import UNTRACKED, metric_modules
    from fewshot_core.launch import SERVER_VARIABLE
    from fewshot_core.outputs import code_version
    from tests.conftest import fewshot_command

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    by_rule = {}
    for meta in sorted((work / ".snakemake" / "metadata").iterdir()):
        record = json.loads(meta.read_text())
        path = base64.b64decode(meta.name).decode()
        kind = next((k for k, o in OUTPUTS.items() if re.fullmatch(
            re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(o.template)), path.removeprefix("results/tiny/"))), None)
        if kind is not None:
            by_rule.setdefault(record["rule"], (kind, record["shellcmd"]))
    assert len(by_rule) >= 14, sorted(by_rule)
    jobs = [(str(work), *reversed(fewshot_command(command))) for _, (_, command) in sorted(by_rule.items())]
    (tmp_path / "jobs.json").write_text(json.dumps([[folder, log, args] for folder, log, args in jobs]))
    env = {k: v for k, v in ENV.items() if k != SERVER_VARIABLE}
    subprocess.run([sys.executable, "-c", FORK_EACH_JOB, str(tmp_path / "jobs.json"), str(tmp_path / "loaded.json")],
                   env=env, check=True)
    allowed_extra = UNTRACKED | metric_modules()
    for (rule, (kind, _)), (_, log, _), (status, modules) in zip(sorted(by_rule.items()), jobs,
                                                                 json.loads((tmp_path / "loaded.json").read_text())):
        assert status == 0, f"{rule}'s job failed: {(work / log).read_text()[-2000:]}"
        loaded = {m.removeprefix("fewshot_core.") for m in modules}
        assert "stages" in loaded, f"no module list from {rule}'s job"
        missing = loaded - set(code_version(OUTPUTS[kind])) - allowed_extra
        assert not missing, f"{rule} loaded {sorted(missing)}, which {kind}'s record does not name"
