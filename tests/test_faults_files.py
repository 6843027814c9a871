"""Fault suite, files: outputs damaged, hand-edited or made by other settings are named and remade or
refused. Run alone with the rest of the fault suite: pytest -m faults."""

import os
import shutil

import pandas as pd
import pytest

from fewshot_core import artifacts, stages
from fewshot_core.errors import ArtifactError
from tests.conftest import edited, load_scenario, run_job_in_process, run_snakemake

pytestmark = pytest.mark.faults
TINY = load_scenario("tiny")


@pytest.fixture(scope="module")
def two_trees(tiny_run):
    """The finished tiny run (two metrics, two seeds), made once per test run; tests damage copies."""
    return tiny_run


@pytest.fixture()
def small_run(two_trees, tmp_path):
    """A copy of the finished trees, to damage."""
    shutil.copytree(two_trees, tmp_path / "run")
    return tmp_path / "run", TINY


def test_corrupt_parquet_is_named_at_start_and_remade(small_run, snakemake):
    work, cfg = small_run
    scores = work / "results" / "tiny" / "snip" / "seed0" / "scores_L1.parquet"
    good = pd.read_parquet(scores)
    scores.write_bytes(b"PAR1 this is not a parquet table")
    with pytest.raises(ArtifactError, match="scores_L1.parquet"):
        artifacts.read_table(scores, {"kind": "scores"})
    proc = snakemake(work, cfg, "splits")
    assert "snip/seed0: 1 file unreadable or without a provenance record (results/tiny/snip/seed0/scores_L1.parquet " \
           "cannot be read): remade where the targets need them" in proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(scores).drop(columns="seconds"), good.drop(columns="seconds"))


def test_hand_edited_invalid_split_is_named_and_the_workflow_recovers(small_run, snakemake):
    """An invalid split whose record agrees with its bytes (a hand edit without that is refused earlier:
    test_freshness.py::test_a_file_edited_by_hand_with_its_time_restored_is_refused_by_its_reader)."""
    import json

    work, cfg = small_run
    split = work / "results" / "tiny" / "snip" / "seed0" / "split_L0.json"
    good = split.read_text()
    artifacts.write_json(json.loads(good.replace('"skip_connect"', '"nor_conv_1x1"', 1)), split)  # an op in two groups
    with pytest.raises(ArtifactError, match="split_L0.json.*not a partition"):
        stages.read_splits(split, {"kind": "splits", "metric": "snip", "seed": 0, "level": 0})
    proc = snakemake(work, cfg, "splits", check=False)
    assert proc.returncode != 0 and "split_L0.json" in proc.stdout + proc.stderr
    split.unlink()
    snakemake(work, cfg, "splits")
    assert split.read_text() == good


@pytest.fixture()
def copy_of(two_trees, tmp_path):
    shutil.copytree(two_trees, tmp_path / "run")
    return tmp_path / "run", tmp_path / "run" / "results" / "tiny"


def failed_job_says(work, *needles, target="splits"):
    """Run the workflow, which must fail at a job whose log names every needle, with no traceback."""
    proc = run_snakemake(work, TINY, target, check=False)
    assert proc.returncode != 0, "the workflow accepted a file it must refuse"
    logs = "".join(p.read_text() for p in (work / "results" / "tiny" / "logs").rglob("*.log")
                   if "error:" in p.read_text())
    for needle in needles:
        assert needle in logs, f"{needle!r} missing from the failed job's log:\n{logs[-2000:]}"
    assert "Traceback" not in logs
    return logs


def remade_at_start(work, path, *needles):
    """Run the workflow: the start-up check names the file's group with every needle, and remakes it."""
    before = path.read_bytes()
    proc = run_snakemake(work, TINY, "splits")
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} missing from the start-up lines:\n{proc.stderr[-2000:]}"
    assert path.read_bytes() != before, "the file was not remade"


def test_another_metrics_scores_at_this_path_are_remade(copy_of):
    work, run = copy_of
    path = run / "synflow" / "seed0" / "scores_L0.parquet"
    shutil.copy(run / "snip" / "seed0" / "scores_L0.parquet", path)
    with pytest.raises(ArtifactError, match="'metric' is 'snip', expected 'synflow'"):
        artifacts.read_table(path, {"kind": "scores", "metric": "synflow"})
    remade_at_start(work, path, "synflow/seed0: 1 file made with other settings (made as metric 'snip', not 'synflow')")
    assert artifacts.read_record(path, "parquet")["metric"] == "synflow"


def test_a_split_file_whose_records_name_another_tree_is_refused(copy_of):
    import json

    work, run = copy_of
    path = run / "snip" / "seed0" / "split_L1.json"
    obj = json.loads(path.read_text())
    obj["splits"][0]["seed"] = 7  # a phantom seed 7 inside a file whose record is right
    artifacts.write_json(obj, path)
    failed_job_says(work, "split_L1.json", "'seed': 7", "another tree")


def test_a_root_of_another_width_is_remade(copy_of, tmp_path):
    """The other root made in this process by the stages its workflow's two jobs run (holdout, root)."""
    from fewshot_core import stages
    from fewshot_core.checks import load_settings

    work, run = copy_of
    wide = load_settings(edited(edited(TINY, "supernet.C", 8), "run", "wide"))
    holdout, root = tmp_path / "holdout_seed0.json", tmp_path / "root.pt"
    stages.make_holdout(wide.holdout_spec(0), holdout, log=print)
    stages.train_root(wide.root_spec(0), holdout, root, tmp_path / "checkpoints", "cpu", log=print)
    shutil.copy(root, run / "seed0" / "root.pt")
    remade_at_start(work, run / "seed0" / "root.pt", "seed0: 1 file made with other settings (made as run 'wide', not 'tiny')")


#: Damages to a holdout and what the job that reads it must say.
HOLDOUT_DAMAGES = [
    (lambda h: {**h, "train": [-1, *h["train"][1:]]}, "outside the dataset"),
    (lambda h: {**h, "train": [h["train"][0], *h["train"]]}, "repeats"),
    (lambda h: {**h, "val": [h["train"][0], *h["val"][1:]]}, "in both train and val"),
    (lambda h: {**h, "val": []}, "empty"),
    (lambda h: {**h, "train": ["0", *h["train"][1:]]}, "integer"),
    (lambda h: {**h, "train": h["train"] + [10**6]}, "outside the dataset"),
]


def damage_holdout(run, edit) -> None:
    import json

    path = run / "data" / "holdout_seed0.json"
    artifacts.write_json(edit(json.loads(path.read_text())), path)  # its record's content digest made to agree


def job_refuses(work, output: str, *needles: str) -> None:
    """The job that made ``output`` in the run, run again in this process as the workflow ran it, stops with
    one error line (status 2, no traceback: an unexpected exception would fail the test) naming every needle."""
    code, err = run_job_in_process(work, output)
    assert code == 2 and err.startswith("fewshot ") and "error:" in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} missing from the job's error:\n{err[-2000:]}"
    assert "Traceback" not in err


def test_a_damaged_holdout_is_refused_by_the_job_that_reads_it(copy_of):
    """Through the workflow, one damage: the first job that reads the holdout fails, its log naming the file
    and the fault. Every damage, through that job alone: the next test."""
    work, run = copy_of
    edit, needle = HOLDOUT_DAMAGES[0]
    damage_holdout(run, edit)
    failed_job_says(work, "holdout_seed0.json", needle)


@pytest.mark.parametrize("edit,needle", HOLDOUT_DAMAGES)
def test_every_damage_to_a_holdout_is_refused_by_the_job_that_reads_it(copy_of, edit, needle):
    """The job the workflow runs first on a changed holdout (the seed's root training), on its recorded
    command line, in this process: one Snakemake start less per damage than the test above."""
    work, run = copy_of
    damage_holdout(run, edit)
    job_refuses(work, "results/tiny/seed0/root.pt", "holdout_seed0.json", needle)


def test_a_scores_table_missing_a_column_is_refused(copy_of):

    work, run = copy_of
    path = run / "snip" / "seed1" / "scores_L0.parquet"
    table = artifacts.read_table(path, {})
    artifacts.write_table(table.drop(columns=["similarity"]), path, table.attrs["provenance"])
    failed_job_says(work, "scores_L0.parquet", "column(s) ['similarity'] missing")


SPLIT_FIELDS = [("edge", "2"), ("groups", "skip"), ("depth", None), ("cut", [1])]


def damage_split_field(run, field: str, value) -> None:
    import json

    path = run / "synflow" / "seed1" / "split_L0.json"
    obj = json.loads(path.read_text())
    obj["splits"][0][field] = value
    artifacts.write_json(obj, path)


def test_a_split_field_of_the_wrong_type_is_refused(copy_of):
    """Through the workflow, one field: the job that reads the split fails naming it. Every field, through
    that job alone: the next test."""
    work, run = copy_of
    field, value = SPLIT_FIELDS[0]
    damage_split_field(run, field, value)
    failed_job_says(work, "split_L0.json", f"split field {field!r}")


@pytest.mark.parametrize("field,value", SPLIT_FIELDS)
def test_split_fields_of_the_wrong_type_are_refused(copy_of, field, value):
    """The job the workflow runs first on the changed split (the next level's scoring), on its recorded
    command line, in this process."""
    work, run = copy_of
    damage_split_field(run, field, value)
    job_refuses(work, "results/tiny/synflow/seed1/scores_L1.parquet", "split_L0.json", f"split field {field!r}")


def test_a_study_set_that_repeats_an_architecture_is_refused(copy_of):
    import json

    work, run = copy_of
    path = run / "study" / "archs.json"
    obj = json.loads(path.read_text())
    obj["archs"][1] = obj["archs"][0]
    artifacts.write_json(obj, path)
    failed_job_says(work, "archs.json", f"the architecture {obj['archs'][0]} is listed 2 times", target="study")


def test_a_link_planted_under_the_run_stops_it_before_any_job_and_its_target_is_untouched(copy_of, tmp_path):
    """Snakemake writes benchmark and log files through links; the start-up check refuses them, naming the
    link and its target."""
    work, run = copy_of
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    bench = next((run / "benchmarks").rglob("*.tsv"))
    bench.unlink()
    bench.symlink_to(target)
    proc = run_snakemake(work, TINY, "splits", check=False)
    assert proc.returncode != 0 and f"{bench.relative_to(work)} is a symbolic link" in proc.stderr
    assert str(target) in proc.stderr and "Traceback" not in proc.stderr and target.read_text() == "keep me"


def test_an_atomic_write_never_follows_a_link(tmp_path):
    """A link at the output's path is replaced, not written through; one at the temporary name is refused."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "out.json"
    out.symlink_to(target)
    artifacts.atomic_write_bytes(out, b"{}")
    assert not out.is_symlink() and out.read_bytes() == b"{}" and target.read_text() == "keep me"
    other = tmp_path / "other.json"
    (tmp_path / f".other.json.{os.getpid()}.tmp").symlink_to(target)
    with pytest.raises(ArtifactError, match="as a symbolic link"):
        artifacts.atomic_write_bytes(other, b"{}")
    assert target.read_text() == "keep me" and not other.exists()
    (tmp_path / f".other.json.{os.getpid()}.tmp").unlink()
    (tmp_path / f".other.json.{os.getpid()}.tmp").write_bytes(b"half")  # a killed job's, with this pid
    artifacts.atomic_write_bytes(other, b"{}")
    assert other.read_bytes() == b"{}"


def test_a_weight_file_whose_tensors_were_altered_is_refused_naming_it(tmp_path):
    """The zip intact (its checksums recomputed), the tensors not those the record names: refused, not loaded."""
    import io
    import zipfile

    import torch

    path = tmp_path / "w.pt"
    artifacts.save_weights(path, {"C": 4}, {"r": {"w": torch.zeros(3)}}, {}, {"kind": "root", "run": "x"})
    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    other = io.BytesIO()
    torch.save({"supernet": {"C": 4}, "nodes": {"r": {"w": torch.ones(3)}}, "masks": {}}, other)
    with zipfile.ZipFile(path, "w") as z:
        for name, payload in {**entries, "tensors.pt": other.getvalue()}.items():
            z.writestr(name, payload)
    with pytest.raises(ArtifactError, match="its tensors are not those its record names: the file is damaged"):
        artifacts.load_weights(path, {"kind": "root"})


def test_other_images_give_every_output_made_from_them_another_key(tmp_path, monkeypatch):
    """Replaced data draws the same holdout indices: the holdouts' specs name the images' digest, so their keys
    change, and with them those of everything made from the data; the study set, drawn from no image, keeps its."""
    from fewshot_core.checks import load_settings
    from fewshot_core.plan import RunSettings

    settings = load_settings(TINY)
    before = {(k, *i.values()): settings.key(k, *i.values()) for k, i in settings.outputs()}
    monkeypatch.setattr(RunSettings, "images", lambda self: "0" * 16)
    after = load_settings(TINY)
    kept = {k[0] for k, v in before.items() if after.key(*k) == v}
    assert kept == {"study_set"}


def test_the_data_file_read_is_the_one_whose_digest_the_holdouts_name(tmp_path):
    """An uncompressed IDX file placed beside the .gz it would be read in place of: the files the loader reads
    and those the data key digests are found by the same function, so the key changes with it."""
    from fewshot_core import data
    from fewshot_core.data_files import data_files
    from fewshot_core.digests import of_files
    from tests.fashion import write_fashion

    write_fashion(tmp_path)
    before = of_files(data_files("fashion_mnist", tmp_path))
    arrays = write_fashion(tmp_path / "other", seed=1, compressed=False)
    (tmp_path / "other" / "train-images-idx3-ubyte").rename(tmp_path / "train-images-idx3-ubyte")
    files = data_files("fashion_mnist", tmp_path)
    assert tmp_path / "train-images-idx3-ubyte" in files and of_files(files) != before
    read = data.load("fashion_mnist", tmp_path, input_size=28)
    assert (read.train_x[:, 0].numpy() == arrays["train-images-idx3-ubyte"]).all()
