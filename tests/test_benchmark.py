"""NAS-Bench-201's accuracies as the study's ground truth, read with nats_bench from a small archive in the
benchmark's own layout: the architecture strings map exactly, the accuracies are those written, a bad
archive stops the run before any job, and the study runs end to end without standalone training."""

import shutil

import pandas as pd
import pytest

from fewshot_core import benchmark
from fewshot_core.nb201 import EDGE_NODES, architectures, full_mask, parse_arch, study_set
from tests.benchmark_archive import SEEDS, accuracy, write_archive
from tests.conftest import edited, load_scenario, refusal, run_snakemake

nats_bench = pytest.importorskip("nats_bench", reason="nats_bench (a dependency) is not installed")
SCENARIO = load_scenario("benchmark")
STUDY = study_set(SCENARIO["study"]["archs"], 0)[0]


def test_every_architecture_string_round_trips_through_the_benchmarks_own_format():
    """All 15,625 cells: the benchmark's parser reads each of our strings back to it, with our operations in
    our edge order (edge i: node d <- node s); and they are the cells its authors' code enumerates."""
    from nats_bench.genotype_utils import topology_str2structure

    ours = architectures(full_mask())
    assert len(ours) == len(set(ours)) == 5**6
    for arch in ours:
        structure = topology_str2structure(arch)
        assert structure.tostr() == arch
        edges = [(op, src, dst) for dst, node in enumerate(structure.nodes, start=1) for op, src in node]
        assert [op for op, _, _ in edges] == parse_arch(arch)
        assert [(dst, src) for _, src, dst in edges] == list(EDGE_NODES)
    genotypes = pytest.importorskip("xautodl.models.cell_searchs.genotypes", reason="xautodl (test peer) missing")
    theirs = genotypes.Structure.gen_all(["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"], 4,
                                         False)
    assert {s.tostr() for s in theirs} == set(ours)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("nats") / "nats", STUDY)


@pytest.mark.parametrize("dataset,setname,column", [("cifar10-valid", "valid", "x-valid"),
                                                    ("cifar10-valid", "test", "ori-test"), ("cifar10", "test", "ori-test")])
def test_the_accuracies_read_are_those_written(archive, dataset, setname, column):
    table = benchmark.read(archive, STUDY, dataset, "200", setname)
    meta = architectures(full_mask())
    assert len(table) == len(STUDY) * len(SEEDS) and set(table.arch) == set(STUDY)
    for r in table.itertuples():
        assert r.index == meta.index(r.arch) and r.seed == SEEDS[r.trial]
        assert r.accuracy == pytest.approx(accuracy(r.index, dataset, column, r.seed, "200") / 100)
    twelve = benchmark.read(archive, STUDY[:1], dataset, "12", setname)
    assert twelve.accuracy[0] == pytest.approx(accuracy(meta.index(STUDY[0]), dataset, column, SEEDS[0], "12") / 100)


def in_a_run_folder(tmp_path, archive):
    shutil.copytree(archive, tmp_path / "nats")
    return tmp_path


def refused(tmp_path, cfg, *needles):
    """Through Snakemake (a dry run): stopped before any job, with one message naming every needle."""
    proc = run_snakemake(tmp_path, cfg, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    for needle in needles:
        assert needle in out, f"{needle!r} missing from:\n{out[-2000:]}"
    assert "Traceback" not in out and not (tmp_path / "results").exists()


def refused_in_process(tmp_path, cfg, *needles):
    """The check the Snakefile makes before any job, in this process (:func:`tests.conftest.refusal`): one
    Snakemake start less than :func:`refused`."""
    message = refusal(tmp_path, cfg)
    for needle in needles:
        assert needle in message, f"{needle!r} missing from:\n{message}"


BAD_GROUND_TRUTHS = [
    (lambda c: edited(c, "study.ground_truth.path", "no/such"), ["study.ground_truth.path", "no/such", "not a folder"]),
    (lambda c: edited(c, "study.ground_truth.dataset", "cifar-10"), ["study.ground_truth.dataset", "cifar10-valid"]),
    (lambda c: edited(c, "study.ground_truth.hp", 90), ["study.ground_truth.hp", "12, 200"]),
    (lambda c: edited(c, "study.ground_truth.accuracy", "valid") | {"study": {
        **c["study"], "ground_truth": {**c["study"]["ground_truth"], "dataset": "cifar10"}}},
     ["study.ground_truth.accuracy", "'cifar10' has no valid set", "test"]),
    (lambda c: edited(c, "data.name", "digits"), ["study.ground_truth.dataset", "data.name 'digits'"]),
    (lambda c: edited(c, "study.archs", "all") | {"study": {**c["study"], "archs": "all", "ground_truth": {}}},
     ["study.archs: all would train every architecture from scratch"]),
]


@pytest.mark.workflow
def test_a_bad_ground_truth_setting_stops_the_run_before_any_job(tmp_path, archive):
    """Through Snakemake, one setting; every setting through the check alone: the next test."""
    change, needles = BAD_GROUND_TRUTHS[0]
    refused(in_a_run_folder(tmp_path, archive), change(SCENARIO), *needles)


@pytest.mark.parametrize("change,needles", BAD_GROUND_TRUTHS)
def test_every_bad_ground_truth_setting_is_refused_by_the_check_before_any_job(tmp_path, archive, change, needles):
    """Each setting through the check alone; one through Snakemake: the test above."""
    refused_in_process(in_a_run_folder(tmp_path, archive), change(SCENARIO), *needles)


def test_a_benchmark_without_the_budget_asked_for_is_named(tmp_path):
    """Through the check alone: an archive read by the check through Snakemake is the damaged-archive test's."""
    write_archive(tmp_path / "nats", STUDY, epochs={"12": 12})
    refused_in_process(tmp_path, SCENARIO, "study.ground_truth.hp", "only has hyper-parameters of ['12'] instead of 200")


def first(folder):
    """The file of the study's first architecture: the one the check reads through the package."""
    return benchmark.arch_file(folder, architectures(full_mask()).index(STUDY[0]))


ARCHIVE_DAMAGES = [
    (lambda f: (f / "meta.pickle.pbz2").write_bytes(b"BZh91AY&SY damaged"), ["meta.pickle.pbz2 cannot be read"]),
    (lambda f: (f / "meta.pickle.pbz2").unlink(), ["holds no meta.pickle.pbz2", "fast mode"]),
    (lambda f: first(f).write_bytes(b"not bz2"),
     [f"nats/{architectures(full_mask()).index(STUDY[0]):06d}.pickle.pbz2 cannot be read by nats_bench"]),
    (lambda f: [p.unlink() for p in f.glob("0*.pickle.pbz2") if p != first(f)], ["is missing",
                                                                                 "download the whole archive"]),
]


@pytest.mark.workflow
def test_a_damaged_archive_stops_the_run_naming_the_file(tmp_path, archive):
    """Through Snakemake, one damage; every damage through the check alone: the next test."""
    work = in_a_run_folder(tmp_path, archive)
    damage, needles = ARCHIVE_DAMAGES[0]
    damage(work / "nats")
    refused(work, SCENARIO, "study.ground_truth.path", *needles)


@pytest.mark.parametrize("damage,needles", ARCHIVE_DAMAGES)
def test_a_damaged_or_incomplete_archive_stops_the_run_naming_the_file(tmp_path, archive, damage, needles):
    """Each damage through the check alone; one through Snakemake: the test above."""
    work = in_a_run_folder(tmp_path, archive)
    damage(work / "nats")
    refused_in_process(work, SCENARIO, "study.ground_truth.path", *needles)


def test_pickles_are_read_only_through_the_benchmarks_package():
    """The package's own loader is the one place a benchmark file is unpickled (nothing here calls pickle)."""
    from tests.conftest import ROOT

    assert "pickle.load" not in (ROOT / "fewshot_core" / "benchmark.py").read_text()


@pytest.mark.workflow
def test_the_study_against_the_benchmark_runs_end_to_end_without_standalone_training(tmp_path, archive):
    work = in_a_run_folder(tmp_path, archive)
    dry = run_snakemake(work, SCENARIO, "--dry-run").stdout
    assert "rule read_benchmark:" in dry and "rule train_standalone:" not in dry
    run_snakemake(work, SCENARIO)
    run = work / "results" / "bench"
    truth = pd.read_parquet(run / "study" / "benchmark.parquet")
    table = pd.read_parquet(run / "ranking.parquet")
    assert set(truth.arch) == set(STUDY) and len(truth) == len(STUDY) * len(SEEDS)
    ceiling = table[table.kind == "ceiling"].iloc[0]  # the benchmark's two trials against each other
    from scipy import stats

    by_trial = truth.pivot(index="arch", columns="trial", values="accuracy")
    assert ceiling.tau_accuracy == pytest.approx(stats.kendalltau(by_trial[0], by_trial[1]).statistic)
    trees = table[table.kind == "tree"]
    mean = truth.groupby("arch").accuracy.mean()
    study = pd.read_parquet(run / "snip" / "seed0" / "study_chunk0.parquet").set_index("arch")
    tau = stats.kendalltau(study.test_accuracy.reindex(mean.index), mean).statistic
    assert trees.iloc[0].tau_accuracy == pytest.approx(tau)
