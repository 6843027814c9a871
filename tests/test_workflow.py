"""The workflow end to end on a tiny configuration: outputs, caching per metric, validation, report."""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]

TINY = {
    "run": "tiny",
    "seeds": [0, 1],
    "data": {"name": "digits", "root": None, "download": False, "input_size": 8, "val_fraction": 0.2},
    "supernet": {"C": 4, "N": 1},
    "device": "cpu",
    "tree": {"policy": {"levels": [2, 2]}, "edge_selection": "order", "edge_order": [0, 1], "balanced": False},
    "metrics": {"snip": {"batch_size": 16, "batches": 1}, "synflow": {"batch_size": 16, "batches": 1}},
    "training": {
        "gpus": 0,
        "optimizer": {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 5e-4, "grad_clip": 5.0},
        "warmup": {"epochs": 0, "batch_size": 64, "mode": "single_path"},
        "leaves": {"epochs": 1, "batch_size": 64, "mode": "single_path", "augment": True, "archs": 2,
                   "leaves_per_job": 4, "runtime_min": 10},
    },
}


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(cfg), "--cores", "2", *args],
                          capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    snakemake(work, TINY)
    return work


def test_tiny_run_writes_every_output(tiny_run):
    run = tiny_run / "results" / "tiny"
    splits = pd.read_parquet(run / "splits.parquet")
    assert len(splits) == 2 * 2 * 3  # metrics x seeds x (1 + 2) split nodes
    assert set(splits.node) == {"r", "r0", "r1"}
    leaves = pd.read_parquet(run / "leaves.parquet")
    assert set(leaves.leaf) == {"r00", "r01", "r10", "r11"} and leaves.val_accuracy.between(0, 1).all()
    for name in ("fig1_split_distance", "fig2_split_distance_by_level", "between_metrics", "trees"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (run / "figures" / f"{name}.pdf").exists()
    assert not list(run.rglob("*.tmp"))


def independent_distance(a, b):
    """DESIGN.md §5 recomputed from co-membership matrices rather than per-operation sets."""
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


def test_changing_one_metrics_settings_reruns_that_metric_alone(tiny_run):
    changed = {**TINY, "metrics": {**TINY["metrics"], "synflow": {"batch_size": 8, "batches": 1}}}
    proc = snakemake(tiny_run, changed, "--dry-run")
    text = proc.stdout + proc.stderr
    assert "metric=synflow" in text and "metric=snip" not in text
    assert "rule init_root" not in text and "rule split_data" not in text


def test_nothing_to_do_after_a_complete_run(tiny_run):
    proc = snakemake(tiny_run, TINY, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_leaf_settings_retrain_leaves_without_rescoring(tiny_run):
    leaves = {**TINY["training"]["leaves"], "archs": 3}
    proc = snakemake(tiny_run, {**TINY, "training": {**TINY["training"], "leaves": leaves}}, "--dry-run")
    text = proc.stdout + proc.stderr
    assert "rule train_leaves" in text and "rule score" not in text and "rule split:" not in text


def test_gmnas_choices_with_warmup_run(tmp_path):
    """mincut edge selection, balanced cuts and warm-up (root per seed, children inherit)."""
    cfg = {**TINY, "seeds": [0], "metrics": {"gradnorm": {"batch_size": 16, "batches": 1}},
           "tree": {"policy": {"levels": [2, 2]}, "edge_selection": "mincut", "balanced": True},
           "training": {**TINY["training"], "warmup": {"epochs": 1, "batch_size": 64, "mode": "single_path"}}}
    snakemake(tmp_path, cfg, "splits")
    run = tmp_path / "results" / "tiny"
    splits = [json.loads(p.read_text()) for p in sorted(run.glob("gradnorm/seed0/split_L*.json"))]
    root, children = splits[0][0], splits[1]
    assert sorted(map(len, root["groups"])) == [2, 3]  # balanced: sizes differ by at most one
    cuts = {int(e): c for e, c in root["candidates"].items()}
    assert len(cuts) == 6 and root["edge"] == min(cuts, key=lambda e: (cuts[e], e))  # mincut scored every edge
    assert all(c["edge"] != root["edge"] for c in children)  # an edge splits once along a path
    assert (run / "gradnorm" / "seed0" / "warmup" / "r0.ckpt").exists()  # children warmed up from the root


def test_summary_prints_splits_and_distances(tiny_run):
    out = subprocess.run([sys.executable, "-m", "fewshot_core.cli", "summary", str(tiny_run / "results" / "tiny")],
                         capture_output=True, text=True, check=True).stdout
    assert "snip" in out and "synflow" in out and "internal mean" in out and "edge 1<-0" in out


@pytest.mark.parametrize("patch,needle", [
    ({"metrics": {"zen": {"batch_size": 8, "batches": 1}}}, "zen"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"data": {**TINY["data"], "name": "mnist"}}, "mnist"),
    ({"tree": {**TINY["tree"], "policy": {"constant": {"leaves": 8, "b": 1}}}}, "policy"),
    ({"training": {**TINY["training"], "leaves": {**TINY["training"]["leaves"], "epochs": 0}}}, "epochs"),
])
def test_bad_configuration_is_rejected_before_any_job(tmp_path, patch, needle):
    proc = snakemake(tmp_path, {**TINY, **patch}, check=False)
    assert proc.returncode != 0
    assert needle in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


FIGURES = {"Split distance": ["fig1_split_distance.png", "fig2_split_distance_by_level.png"],
           "Beyond the paper": ["between_metrics.png", "trees.png"]}


def test_report_is_self_contained_and_renders(tiny_run):
    """Open the report in headless Chromium with the network refused; every figure must display."""
    report = tiny_run / "report.html"
    snakemake(tiny_run, TINY, "--report", str(report))
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
        for category, files in FIGURES.items():
            for name in files:
                page.get_by_role("link", name=category).click()
                page.locator("tr", has_text=name).locator("a").first.click()
                page.wait_for_function(
                    "() => [...document.images].some(i => i.src.startsWith('data:image/png') && i.naturalWidth > 500)",
                    timeout=20_000)
                page.goto(report.as_uri())
        browser.close()
    assert outside == [], f"the report fetched from the network: {outside}"
