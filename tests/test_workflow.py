"""The workflow end to end on tiny configurations: outputs, caching, staleness, configuration files, report."""

import contextlib
import dataclasses
import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fewshot_core import artifacts, stages
from fewshot_core.errors import ArtifactError, DataError
from fewshot_core.freshness import STAMPS
from fewshot_core.outputs import BENCHMARK, CHECKPOINTS, FIGURES, LOG, OUTPUTS
from tests.conftest import ROOT

TABLES = ("splits.parquet", "split_distance.parquet", "leaves.parquet")


def test_tiny_run_writes_every_output(tiny_run):
    run = tiny_run / "results" / "tiny"
    splits = pd.read_parquet(run / "splits.parquet")
    assert len(splits) == 2 * 2 * 3  # metrics x seeds x (1 + 2) split nodes
    assert set(splits.node) == {"r", "r0", "r1"}
    leaves = pd.read_parquet(run / "leaves.parquet")
    assert set(leaves.leaf) == {"r00", "r01", "r10", "r11"} and leaves.val_accuracy.between(0, 1).all()
    weights = artifacts.load_weights(run / "snip" / "seed0" / "leaves" / "chunk0.pt",
                                     {"kind": "leaf_weights", "metric": "snip", "seed": 0})
    assert sorted(weights["nodes"]) == ["r00", "r01", "r10", "r11"]
    for figure in FIGURES.values():
        png, *others = map(Path, figure.files(run))
        assert png.stat().st_size > 10_000 and all(p.exists() for p in others), figure.name
    assert not list(run.rglob("*.tmp"))
    assert not [p for p in (run / "checkpoints").rglob("*") if p.is_file()]  # deleted when their jobs ended


def test_every_file_of_the_tiny_run_is_in_the_catalogue_with_its_columns(tiny_run):
    """fewshot_core/outputs.py describes every file a run writes: each output (a table's columns in their
    order, a JSON file's keys), each figure's PNG, PDF and CSV, the logs, the job records and the stamps."""
    import json
    import re

    import pyarrow.parquet as pq

    run = tiny_run / "results" / "tiny"

    def pattern(template: str, part: str = "[^/]+") -> str:
        return re.sub(r"\\\{\w+\\\}", part, re.escape(template))

    kinds = [(o, pattern(o.template)) for o in OUTPUTS.values()]
    figures = {Path(p).relative_to(run).as_posix() for f in FIGURES.values() for p in f.files(run)}
    other = [pattern(t, ".+") for t in (LOG, BENCHMARK, *(f"checkpoints/{c}" for c in CHECKPOINTS.values()))]
    other += [pattern(f"{STAMPS}/{o.template}") for o in OUTPUTS.values()]  # one stamp per output
    seen = set()
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        rel = path.relative_to(run).as_posix()
        output = next((o for o, regex in kinds if re.fullmatch(regex, rel)), None)
        if output is not None:
            seen.add(output.kind)
            if output.format == "parquet" and output.columns:
                assert tuple(pq.read_schema(path).names) == output.columns, rel
            elif output.format == "json":
                assert set(json.loads(path.read_text())) == {"provenance", *output.columns}, rel
            continue
        assert rel in figures or any(re.fullmatch(regex, rel) for regex in other), f"{rel} is in no catalogue"
    assert seen == set(OUTPUTS) - {"nodes", "benchmark"}  # warm-up and NAS-Bench-201 only
    assert figures <= {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def independent_distance(a, b):
    """docs/design.md §5 recomputed from co-membership matrices rather than per-operation sets."""
    ops = sorted(o for g in a for o in g)
    same_a = {(x, y) for g in a for x in g for y in g if x != y}
    same_b = {(x, y) for g in b for x in g for y in g if x != y}
    return len(same_a ^ same_b) / (2 * (len(ops) - 1))


def test_distances_equal_an_independent_recomputation(tiny_run):
    run = tiny_run / "results" / "tiny"
    splits = pd.read_parquet(run / "splits.parquet")
    pairs = pd.read_parquet(run / "split_distance.parquet")
    groups = {(r.metric, r.seed, r.node): [list(g) for g in r.groups] for r in splits.itertuples()}
    expected = []
    for (ka, ga), (kb, gb) in itertools.combinations(sorted(groups.items()), 2):
        if ka[0] == kb[0] and ka[1] == kb[1]:
            kind = "internal"
        elif ka[0] == kb[0]:
            kind = "external"
        elif ka[1] == kb[1] and ka[2] == kb[2]:
            kind = "between_metrics"
        else:
            continue
        expected.append((kind, *ka, *kb, independent_distance(ga, gb)))
    got = sorted(zip(pairs.kind, pairs.metric_a, pairs.seed_a, pairs.node_a, pairs.metric_b, pairs.seed_b,
                     pairs.node_b, pairs.distance))
    assert len(got) == len(expected)
    for g, e in zip(got, sorted(expected)):
        assert g[:7] == e[:7] and g[7] == pytest.approx(e[7])


def test_figures_plot_each_splits_mean_distance_to_the_splits_it_is_compared_with(tiny_run):
    """Figure 1's values, recomputed from the split-distance table: one per split, seeds pooled."""
    run = tiny_run / "results" / "tiny"
    pairs = pd.read_parquet(run / "split_distance.parquet")
    expected: dict[tuple, list[float]] = {}
    for r in pairs[pairs.kind.isin(["internal", "external"])].itertuples():
        for metric, seed, node in ((r.metric_a, r.seed_a, r.node_a), (r.metric_b, r.seed_b, r.node_b)):
            expected.setdefault((r.kind, metric, seed, node), []).append(r.distance)
    plotted = pd.read_csv(run / "figures" / "fig1_split_distance.csv")
    got = {(r.kind, r.metric, r.seed, r.node): r.distance for r in plotted.itertuples()}
    assert set(got) == set(expected) and len(got) == 2 * 2 * 2 * 3  # kinds x metrics x seeds x splits
    for key, distances in expected.items():
        assert got[key] == pytest.approx(sum(distances) / len(distances))
    by_level = pd.read_csv(run / "figures" / "fig2_split_distance_by_level.csv")
    assert set(by_level.depth) == {0, 1} and not ((by_level.kind == "internal") & (by_level.depth == 0)).any()


def test_figures_drawn_twice_from_the_same_tables_are_the_same_files(tiny_run, tmp_path):
    """No time of drawing in the files, and the dots' jitter fixed: a figure is a function of its values."""
    from fewshot_core import report

    run = tiny_run / "results" / "tiny"
    splits, pairs = pd.read_parquet(run / "splits.parquet"), pd.read_parquet(run / "split_distance.parquet")
    first = report.draw_all(splits, pairs, tmp_path / "a")
    second = report.draw_all(splits, pairs, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_changing_one_metrics_settings_reruns_that_metric_alone(tiny_run, scenario, snakemake, edit):
    proc = snakemake(tiny_run, edit(scenario("tiny"), "metrics.synflow.batch_size", 8), "--dry-run")
    text = proc.stdout + proc.stderr
    assert "metric=synflow" in text and "metric=snip" not in text
    assert "rule train_root" not in text and "rule make_holdout" not in text


def test_nothing_to_do_after_a_complete_run(tiny_run, scenario, snakemake):
    proc = snakemake(tiny_run, scenario("tiny"), "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_leaf_settings_retrain_leaves_without_rescoring(tiny_run, scenario, snakemake, edit):
    proc = snakemake(tiny_run, edit(scenario("tiny"), "training.leaves.archs", 3), "--dry-run")
    text = proc.stdout + proc.stderr
    assert "rule train_leaves" in text and "rule score_edges" not in text and "rule split_nodes" not in text


def test_summary_prints_splits_and_distances(tiny_run):
    out = subprocess.run([sys.executable, "-m", "fewshot_core.cli", "summary", str(tiny_run / "results" / "tiny")],
                         capture_output=True, text=True, check=True).stdout
    assert "snip" in out and "synflow" in out and "splits mean" in out and "edge 1<-0" in out
    assert "No random splits in this run to compare with" in out  # the tiny scenario has none
    assert "Ranking study" in out and "one-shot" in out


def test_gmnas_choices_with_warmup_run(tmp_path, scenario, snakemake):
    """mincut edge selection, balanced cuts and warm-up (root per seed, children inherit)."""
    snakemake(tmp_path, scenario("gmnas"), "splits")
    run = tmp_path / "results" / "tiny"
    root = stages.read_splits(run / "gradnorm" / "seed0" / "split_L0.json",
                                 {"kind": "splits", "metric": "gradnorm", "seed": 0, "level": 0})[0]
    children = stages.read_splits(run / "gradnorm" / "seed0" / "split_L1.json",
                                     {"kind": "splits", "metric": "gradnorm", "seed": 0, "level": 1})
    assert sorted(map(len, root.groups)) == [2, 3]  # balanced: sizes differ by at most one
    cuts = root.candidates
    assert len(cuts) == 6 and root.edge == min(cuts, key=lambda e: (cuts[e], e))  # mincut scored every edge
    assert all(c.edge != root.edge for c in children)  # an edge splits once along a path
    nodes = artifacts.load_weights(run / "gradnorm" / "seed0" / "nodes_L1.pt",
                                   {"kind": "nodes", "metric": "gradnorm", "seed": 0, "level": 1})
    assert sorted(nodes["nodes"]) == ["r0", "r1"]  # the children, warmed up from the root


def test_fashion_mnist_from_its_files_runs_end_to_end_on_a_subset(tmp_path, tiny, snakemake):
    """data.name fashion_mnist read from small IDX files, data.train_images a seeded subset named in the
    holdout's record; every stage through the study."""
    from tests.fashion import write_fashion

    write_fashion(tmp_path / "fm", n_train=120, n_test=30)
    cfg = {**tiny, "seeds": [0], "metrics": {"snip": tiny["metrics"]["snip"], "random": {}},
           "data": {"name": "fashion_mnist", "root": "fm", "input_size": 8, "train_images": 80},
           "study": {**tiny["study"], "gt_seeds": 2}}
    snakemake(tmp_path, cfg)
    run = tmp_path / "results" / "tiny"
    holdout = artifacts.read_json(run / "data" / "holdout_seed0.json", {"kind": "holdout", "seed": 0})
    assert len(holdout["train"]) == 64 and len(holdout["val"]) == 16
    assert holdout["provenance"]["settings"]["data"]["train_images"] == 80
    assert holdout["provenance"]["n_images"] == 120
    out = subprocess.run([sys.executable, "-m", "fewshot_core.cli", "summary", str(run)], capture_output=True,
                         text=True, check=True).stdout
    assert "on fashion_mnist 8x8 (80 training images), C=4 N=1; ground truth: 2 standalone trainings" in out
    assert "ceiling" in out
    # The same bytes written again (a new modification time) change nothing; other images under the same
    # names rerun everything the data feeds, and a job reading the old holdout refuses to go on.
    labels = tmp_path / "fm" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes())
    assert "Nothing to be done" in snakemake(tmp_path, cfg, "--dry-run").stdout
    write_fashion(tmp_path / "fm", n_train=120, n_test=30, seed=1)
    proc = snakemake(tmp_path, cfg, "--dry-run")
    assert "seed0: 1 file made with other settings (the files of fashion_mnist" in proc.stderr, proc.stderr
    assert "rule make_holdout:" in proc.stdout
    from fewshot_core import stages
    from fewshot_core.checks import load_settings

    with contextlib.chdir(tmp_path):  # data.root is relative to the workflow's folder
        spec = load_settings(cfg, workdir=tmp_path).root_spec(0)
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, root=str(tmp_path / "fm")))
    holdout = run / "data" / "holdout_seed0.json"
    with pytest.raises(ArtifactError, match="holdout_seed0.json: provenance field 'key'"):  # planned now: another key
        stages._holdout(spec, holdout)
    started = dataclasses.replace(spec, inputs={**spec.inputs, "holdout": artifacts.read_record(holdout, "json")["key"]})
    with pytest.raises(DataError, match="images-idx3-ubyte.gz has changed since .*holdout_seed0.json was made"):
        stages._holdout(started, holdout)  # a job planned before the images changed, run after


# ----------------------------------------------------------------------------- configuration files


def dag_paths(text: str, run: str) -> set[tuple[str, str]]:
    """(metric, seed) of every per-tree path in a dry run's output."""
    return set(re.findall(rf"results/{run}/([a-z_]+)/seed(\d+)/", text))


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """A folder where the paper's configurations find CIFAR-10 and NAS-Bench-201's archive."""
    from tests.benchmark_archive import write_complete_archive

    work = tmp_path_factory.mktemp("paper")
    (work / "data" / "cifar10" / "cifar-10-batches-bin").mkdir(parents=True)
    pytest.importorskip("nats_bench", reason="nats_bench (a dependency) is not installed")
    write_complete_archive(work / "data" / "NATS-tss-v1_0-3ffb9-simple")
    return work


@pytest.fixture(scope="module")
def config_dry_run(cifar_dir, snakemake):
    """The dry run of a configuration file of config/ in ``cifar_dir``, made once for the module's tests."""
    done = {}

    def dry_run(name: str):
        if name not in done:
            done[name] = snakemake(cifar_dir, None, "--dry-run", "--configfile", str(ROOT / "config" / name))
        return done[name]

    return dry_run


def test_paper_configuration_is_the_whole_configuration(cifar_dir, snakemake, config_dry_run):
    """A --configfile is not merged into the default: the paper's DAG holds exactly its metrics."""
    import yaml

    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    trees = dag_paths(config_dry_run("paper.yaml").stdout, "paper")
    assert {m for m, _ in trees} == set(paper["metrics"])
    assert {int(s) for _, s in trees} == set(paper["seeds"])
    # --config still overrides, on top of a file (a smaller DAG than the paper's)
    plain = dag_paths(config_dry_run("study.yaml").stdout, "study")
    proc = snakemake(cifar_dir, None, "--dry-run", "--configfile", str(ROOT / "config" / "study.yaml"), "--config",
                     "run=study_try")
    assert dag_paths(proc.stdout, "study_try") == plain and plain


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name != "paper.yaml"))
def test_every_configuration_file_dry_runs_on_its_own(config_dry_run, name):
    """(paper.yaml's own dry run is the test above; study.yaml's is shared with it.)"""
    import yaml

    from fewshot_core.data import FASHION_ROOT

    data = yaml.safe_load((ROOT / "config" / name).read_text()).get("data", {})
    if data.get("name") == "fashion_mnist" and not data.get("root") and not Path(FASHION_ROOT).is_dir():
        pytest.skip(f"{name} reads Debian's dataset-fashion-mnist, not installed here ({FASHION_ROOT})")
    assert "This was a dry-run" in config_dry_run(name).stdout


# ----------------------------------------------------------------------------- no stale results


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory, scenario, snakemake):
    work = tmp_path_factory.mktemp("warm")
    snakemake(work, scenario("warmup"), "splits", "leaves")
    return work


@pytest.fixture(scope="module")
def changed(tmp_path_factory, warm_run, scenario, side_by_side, edit):
    """For one change to the staleness scenario: the complete run updated by it (a copy of ``warm_run``, with
    Snakemake's records of it, then `snakemake`) and a fresh run of the changed configuration, the two made
    side by side when first asked for and kept for the module's other tests."""
    made = {}

    def pair(key: str, value) -> tuple[Path, Path]:
        if (key, value) not in made:
            config = edit(scenario("warmup"), key, value)
            updated, fresh = tmp_path_factory.mktemp("updated"), tmp_path_factory.mktemp("fresh")
            shutil.copytree(warm_run, updated, dirs_exist_ok=True)
            side_by_side([(updated, config, ("splits", "leaves")), (fresh, config, ("splits", "leaves"))])
            made[key, value] = updated, fresh
        return made[key, value]

    return pair


@pytest.mark.parametrize("key,value", [
    ("training.leaves.epochs", 2),
    ("training.leaves.archs", 3),
    ("training.optimizer.lr", 0.05),
    ("training.warmup.epochs", 2),
    ("metrics.snip.batch_size", 8),
])
def test_a_change_gives_the_tables_of_a_fresh_run(changed, key, value):
    """After a complete run, one change then `snakemake` equals a fresh run of the new configuration."""
    updated, fresh = changed(key, value)
    for name in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(updated / "results" / "tiny" / name),
                                      pd.read_parquet(fresh / "results" / "tiny" / name))


def test_the_nodes_of_a_warm_up_made_by_other_settings_are_scheduled_again(warm_run, changed, tmp_path, scenario,
                                                                           snakemake):
    """The start-up check finds a warm-up's nodes made by other settings (those of the fresh run with two
    warm-up epochs above, where the scenario has one) and forces their job."""
    target = "results/tiny/snip/seed0/nodes_L1.pt"
    work = tmp_path / "run"
    shutil.copytree(warm_run, work)
    shutil.copy(changed("training.warmup.epochs", 2)[1] / target, work / target)
    proc = snakemake(work, scenario("warmup"), "--dry-run", target)
    assert "snip/seed0: 1 file made with other settings (epochs 2 -> 1): remade where the targets need them" in proc.stderr
    assert "Updated input files: results/tiny/.stamps/snip/seed0/nodes_L1.pt" in proc.stdout
    assert "rule train_children" in proc.stdout


# ----------------------------------------------------------------------------- the report


def test_a_report_of_a_configuration_that_never_ran_is_refused_in_one_line(tiny_run, scenario, snakemake, edit):
    """Three seeds where two ran: the figures exist but were drawn from two, so the report would caption
    them wrongly; a study never run: its tables do not exist. Neither writes a report."""
    report = tiny_run / "refused.html"
    for config, needle in ((edit(scenario("tiny"), "seeds", [0, 1, 2]), "was made with other settings (seeds [0, 1] -> [0, 1, 2])"),
                           (edit(scenario("tiny"), "study.top_k", 3), "was made with other settings (top_k 2 -> 3)")):
        proc = snakemake(tiny_run, config, "--report", str(report), check=False)
        assert proc.returncode != 0 and "Report: results/tiny/" in proc.stderr and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not report.exists()
    proc = snakemake(tiny_run, edit(scenario("tiny"), "run", "never"), "--report", str(report), check=False)
    assert "Report: results/never/figures/fig1_split_distance.png (and" in proc.stderr and "does not exist" in proc.stderr
    profile = tiny_run / "report_profile"  # --report given in a profile, not on the command line
    profile.mkdir(exist_ok=True)
    (profile / "config.yaml").write_text(f"report: {report}\n")
    proc = snakemake(tiny_run, edit(scenario("tiny"), "study.top_k", 3), "--profile", str(profile), check=False)
    assert proc.returncode != 0 and "was made with other settings (top_k 2 -> 3)" in proc.stderr, proc.stderr
    assert not report.exists()


def test_report_is_self_contained_and_renders(tiny_run, scenario, snakemake):
    """Open the report in headless Chromium with the network refused; every figure must display."""
    report = tiny_run / "report.html"
    snakemake(tiny_run, scenario("tiny"), "--report", str(report))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'): report rendering not checked")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")
    outside = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def refuse(route):
            if not route.request.url.startswith(("file:", "data:", "blob:")):
                outside.append(route.request.url)
                return route.abort()
            return route.continue_()

        page.route("**/*", refuse)
        page.goto(report.as_uri())
        for figure in FIGURES.values():
            if figure.rule == "draw_figures":
                page.get_by_role("link", name=figure.category).click()
                page.locator("tr", has_text=f"{figure.name}.png").locator("a").first.click()
                page.wait_for_function(
                    "() => [...document.images].some(i => i.src.startsWith('data:image/png') && i.naturalWidth > 500)",
                    timeout=20_000)
                page.goto(report.as_uri())
        browser.close()
    assert outside == [], f"the report fetched from the network: {outside}"


def test_every_metric_value_and_split_of_the_tiny_scenario_equals_the_stored_reference(tiny_run):
    """Values and splits as computed before the job server and the speed-ups (tests/data/tiny_reference.json):
    how a job is run may change, what it computes may not."""
    import json

    reference = json.loads((ROOT / "tests" / "data" / "tiny_reference.json").read_text())
    run = tiny_run / "results" / "tiny"
    scores = pd.concat([pd.read_parquet(p) for p in sorted(run.glob("*/seed*/scores_L*.parquet"))])
    got = {(r.metric, int(r.seed), r.node, int(r.edge), r.op): r for r in scores.itertuples()}
    assert len(got) == len(reference["scores"])
    for want in reference["scores"]:
        r = got[want["metric"], want["seed"], want["node"], want["edge"], want["op"]]
        for name in ("value", "parent_value"):
            if want[name] is None:
                assert getattr(r, name) is None or pd.isna(getattr(r, name))
            else:
                assert getattr(r, name) == pytest.approx(want[name], rel=1e-6, abs=1e-9), (name, want)
        # -|z_i - z_j| with z in units of the parent's value: values within 1e-6 of theirs (float32 kernels
        # round differently from one CPU to another) move it by up to about 1e-6, near zero too
        assert list(r.similarity) == pytest.approx(want["similarity"], rel=1e-6, abs=1e-6)
    splits = pd.read_parquet(run / "splits.parquet")
    got = {(r.metric, int(r.seed), r.node): (int(r.edge), [list(g) for g in r.groups]) for r in splits.itertuples()}
    assert got == {(s["metric"], s["seed"], s["node"]): (s["edge"], s["groups"]) for s in reference["splits"]}
