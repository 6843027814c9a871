"""The GPU check (benchmarks/gpu.sh, benchmarks/gpu.py): its comparison of a CPU and a GPU run, and its
install step, which must work on a machine that reaches no package registry."""

import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fewshot_core.nb201 import OPS
from fewshot_core.splitting import SplitRecord, partition
from tests.conftest import ROOT


def script(name: str):
    """A module of benchmarks/ (which is no package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu, gpu_wheels = script("gpu"), script("gpu_wheels")


# ----------------------------------------------------------------------------- compare


def similarity(eps: float) -> np.ndarray:
    """Five operations: {0, 1} and {3, 4} alike, and operation 2 as like the first pair as the second but
    for ``eps``: a positive ``eps`` puts it with {3, 4}, a negative one with {0, 1}; the two cuts differ by
    2 x ``eps``."""
    s = np.full((5, 5), 0.1)
    s[0, 1] = s[1, 0] = s[3, 4] = s[4, 3] = 0.9
    s[2, [0, 1]] = s[[0, 1], 2] = 0.5
    s[2, [3, 4]] = s[[3, 4], 2] = 0.5 + eps
    np.fill_diagonal(s, 1.0)
    return s


def record(metric: str, node: str, edge: int, sim: np.ndarray, candidates: dict | None = None) -> SplitRecord:
    groups, cut = partition(sim, 2)
    return SplitRecord(node=node, depth=len(node) - 1, edge=edge, groups=[[OPS[i] for i in g] for g in groups], cut=cut,
                       ops=list(OPS), similarity=sim.tolist(), metric=metric, seed=0,
                       candidates=candidates or {edge: cut})


def write_run(run: Path, records: list[SplitRecord]) -> Path:
    """A run's per-level split files, as the workflow writes them (the records only: compare reads no more)."""
    for rec in records:
        path = run / rec.metric / "seed0" / f"split_L{rec.depth}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text())["splits"] if path.exists() else []
        path.write_text(json.dumps({"splits": old + [rec.to_dict()]}))
    return run


def test_a_near_tie_decided_differently_is_printed_with_its_values_and_does_not_fail(tmp_path, capsys):
    """Operation 2's similarities differ by 2e-7 between the runs, within float32 rounding: the root's groups
    differ, its children follow, and another tree's edges (chosen by their best cut) are nearly tied too."""
    cpu = write_run(tmp_path / "cpu", [record("snip", "r", 0, similarity(1e-7)), record("snip", "r0", 1, similarity(0.2)),
                                       record("snip", "r1", 1, similarity(0.2)),
                                       record("gm", "r", 0, similarity(0.2), {0: 1.0, 1: 1.0 + 1e-6})])
    gpu_ = write_run(tmp_path / "gpu", [record("snip", "r", 0, similarity(-1e-7)), record("snip", "r0", 1, similarity(-0.2)),
                                        record("snip", "r1", 1, similarity(0.2)),
                                        record("gm", "r", 1, similarity(0.2), {0: 1.0, 1: 1.0 - 1e-6})])
    assert gpu.compare(cpu, gpu_) == 0
    out = capsys.readouterr().out
    assert out.count("a near-tie, decided differently") == 2 and "DIFFERS" not in out
    assert "snip/0/r: a near-tie" in out and "gm/0/r: a near-tie" in out
    assert "['none', 'skip_connect'], ['nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3']] cuts 1.4" in out  # the values
    assert "edge 0's best cut 1, edge 1's 1.000001" in out
    assert "splits: 1 of 4 identical; 2 near-tie(s)" in out and "0 other difference(s); 1 split(s) below" in out


def test_any_other_difference_fails_the_check_with_the_similarities_that_decided_it(tmp_path, capsys):
    """A similarity moved by 0.4 (a cut by 0.8): far beyond rounding, on both devices."""
    cpu = write_run(tmp_path / "cpu", [record("snip", "r", 0, similarity(0.2)), record("synflow", "r", 0, similarity(0.2))])
    gpu_ = write_run(tmp_path / "gpu", [record("snip", "r", 0, similarity(-0.2)), record("synflow", "r", 0, similarity(0.2))])
    assert gpu.compare(cpu, gpu_) == 1
    out = capsys.readouterr().out
    assert "snip/0/r: DIFFERS" in out and "beyond" in out and "within" not in out.split("splits:")[0]
    assert out.count("similarity in") == 2 and "0.7" in out  # each run's matrix, printed
    assert "splits: 1 of 2 identical; 0 near-tie(s)" in out and "1 other difference(s)" in out
    write_run(tmp_path / "short", [record("snip", "r", 0, similarity(0.2))])
    assert gpu.compare(cpu, tmp_path / "short") == 1  # a split missing from one run


# ----------------------------------------------------------------------------- the install step


def image_python(folder: Path) -> Path:
    """A Python like the GPU machine's image: a virtual environment holding only benchmarks/gpu_wheels.py's
    IMAGE packages (torch, numpy, pandas, ...) and what they need, linked from this environment; none of
    Snakemake, scikit-learn or their dependencies."""
    import venv

    venv.EnvBuilder(symlinks=True, with_pip=False).create(folder)
    site = next(folder.glob("lib/python*/site-packages"))
    todo, seen = [(name, set()) for name in gpu_wheels.IMAGE], set()
    while todo:
        name, extras = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # a requirement this platform does not install
            continue
        for text in dist.requires or []:  # with the extras it is required with (torch's cuda-toolkit[cudart, ...])
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                if (canonicalize_name(req.name), frozenset(req.extras)) not in seen:
                    seen.add((canonicalize_name(req.name), frozenset(req.extras)))
                    todo.append((req.name, req.extras))
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not (site / top).exists():
                (site / top).symlink_to(dist.locate_file(top))
    return folder / "bin" / "python"


@pytest.mark.workflow
def test_the_install_step_gives_an_image_without_snakemake_a_working_workflow_from_the_wheels_alone(tmp_path):
    """gpu.sh's install step, as it runs on the GPU machine: the wheel folder built for this Python (the
    GPU machine's is 3.12, this one's 3.11), then installed into a Python that holds only the image's
    packages, with no index and every proxy pointing at a closed port (no download can happen). The workflow
    then plans the every-metric scenario and runs its first jobs through the `fewshot` command installed there."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_wheels.py"), "--python-version", version,
                            "--out", str(wheels)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0 and " MiB of the 64 MiB" in built.stdout, built.stdout + built.stderr
    python = image_python(tmp_path / "image")
    closed = "http://127.0.0.1:9"
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(python),
           "OMP_NUM_THREADS": "1", **{k: closed for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}}
    assert subprocess.run([str(python), "-c", "import snakemake"], env=env, capture_output=True).returncode != 0
    site, work = tmp_path / "site", tmp_path / "run"
    script = (f"source benchmarks/gpu.sh && install_wheels {wheels} {site} && use_site {site} && "
              f"python -m snakemake -s Snakefile --directory {work} --configfile .test/config/every_metric.yaml "
              f"--cores 1 results/every_metric/snip/seed0/scores_L0.parquet")
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    installed = {canonicalize_name(p.name.split("-")[0]) for p in site.glob("*.dist-info")}
    assert {"snakemake", "scikit-learn", "nats-bench", "xautodl", "fewshot-core", "pulp"} <= installed
    assert not installed & {canonicalize_name(n) for n in gpu_wheels.IMAGE}  # the image's own are used
    assert (work / "results" / "every_metric" / "snip" / "seed0" / "scores_L0.parquet").exists()
    assert "installed from" in proc.stdout


def test_without_the_wheel_folder_the_install_step_says_how_to_build_it(tmp_path):
    proc = subprocess.run(["bash", "-c", f"source benchmarks/gpu.sh && install_wheels {tmp_path / 'none'} {tmp_path / 'site'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.strip() == (f"no pip wheel in {tmp_path / 'none'}: build the folder where PyPI is reachable "
                                   "(python benchmarks/gpu_wheels.py)")
