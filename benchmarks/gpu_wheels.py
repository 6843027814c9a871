"""The wheel folder that the GPU check (benchmarks/gpu.sh) installs from, on a machine that reaches no registry.

    python benchmarks/gpu_wheels.py             # wheels/gpu/ (ignored by git): CPython 3.12, x86_64 Linux
    python benchmarks/gpu_wheels.py --python-version 3.11 --out DIR    # for another Python (the tests)

Run it where PyPI is reachable. The folder holds what the GPU machine's image lacks of what this package and
the check need: Snakemake (pyproject's pin) and its dependencies, scikit-learn (the digits' file) and
nats_bench with theirs, xautodl (the figures' peer, installed without its dependencies, as ``make setup``
does), pip (gpu.sh runs pip from its wheel, whatever the image's pip) and this package's own wheel (its
``fewshot`` command; the code that runs is the checkout's, first on the import path). The image's packages
(:data:`IMAGE`) and what they need are left out; pip resolves the rest for the target Python and platform,
binary wheels only, and a dependency published only as source (:data:`SOURCE_ONLY`) is built into a wheel
here (pure Python: one wheel serves every Python 3). gpu.sh installs only what its machine lacks of them.
The folder's size, with the working tree's, is checked against the 64 MiB that a command may take along to
the GPU machine; the exit status is 1 over it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: What the GPU machine's image holds (with what each needs): never carried.
IMAGE = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "scipy", "seaborn", "matplotlib", "pyyaml")
#: Dependencies published only as source: Snakemake's connection_pool.
SOURCE_ONLY = ("connection_pool",)
#: Installed without their dependencies: xautodl declares numpy<=1.19.5 and fvcore, which its supernet needs neither of.
NO_DEPS = ("xautodl",)
#: manylinux wheels for glibc 2.28 and older: PyTorch's own CUDA wheels need 2.28, so the GPU image has it
#: (and this machine's 2.36 runs them too). pip matches each tag exactly, so every one is named.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
#: What a command may take along to the GPU machine: the working tree and the ignored folders it names.
CARRY_LIMIT_MIB = 64


def pip(*args: str) -> subprocess.CompletedProcess:
    """pip of the Python running this script; its output shown only when it fails."""
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"pip {args[0]} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def target(python_version: str) -> list[str]:
    """pip's options for binary wheels of CPython ``python_version`` on x86_64 Linux."""
    return ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            *(f"--platform={p}" for p in PLATFORMS)]


def needed_requirements() -> list[str]:
    """This package's dependencies that the image does not hold (pyproject.toml's pins)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    image = {canonicalize_name(n) for n in IMAGE}
    return [d for d in deps if canonicalize_name(Requirement(d).name) not in image]


def image_closure(items: list[dict]) -> set[str]:
    """The resolved packages that the image's packages need (so the image has them), by canonical name."""
    requires = {canonicalize_name(i["metadata"]["name"]): i["metadata"].get("requires_dist") or [] for i in items}
    todo = [n for n in map(canonicalize_name, IMAGE) if n in requires]
    seen = set(todo)
    while todo:
        for text in requires[todo.pop()]:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            if name in requires and name not in seen and "extra" not in str(req.marker or ""):
                seen.add(name)
                todo.append(name)
    return seen


def build(out: Path, python_version: str) -> list[Path]:
    """Fill ``out`` with the wheels (its older wheels removed first); returns them."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src")  # the package alone: no build files left in the checkout
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, src / name)
        shutil.copytree(ROOT / "fewshot_core", src / "fewshot_core", ignore=shutil.ignore_patterns("__pycache__"))
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(src))
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), *SOURCE_ONLY)
        impure = [w.name for w in out.glob("*.whl") if not w.name.endswith("-none-any.whl")]
        if impure:
            sys.exit(f"built wheels that hold compiled code, which would not serve Python {python_version}: {impure}")
        report = Path(tmp, "report.json")
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report), "--target", str(Path(tmp, "t")),
            "--find-links", str(out), *target(python_version), *needed_requirements(), "pip")
        items = json.loads(report.read_text())["install"]
        left_out = image_closure(items)
        urls = [i["download_info"]["url"] for i in items if canonicalize_name(i["metadata"]["name"]) not in left_out]
        fetch = [u for u in urls if Path(url2pathname(urlparse(u).path)).parent != out]
        pip("download", "--quiet", "--no-deps", "--dest", str(out), *target(python_version), *fetch)
        pip("download", "--quiet", "--no-deps", "--dest", str(out), *target(python_version), *NO_DEPS)
    return sorted(out.glob("*.whl"))


def tree_bytes() -> int:
    """The size of what a command takes along besides the named folders: the tracked files and the untracked
    ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum(p.stat().st_size for n in names if n and (p := ROOT / n.decode()).is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python (3.12)")
    ap.add_argument("--out", type=Path, default=ROOT / "wheels" / "gpu")
    args = ap.parse_args()
    wheels = build(args.out.resolve(), args.python_version)
    size, tree = sum(w.stat().st_size for w in wheels), tree_bytes()
    mib = 2**20
    largest = ", ".join(f"{w.name.split('-')[0]} {w.stat().st_size / mib:.1f}"
                        for w in sorted(wheels, key=lambda w: -w.stat().st_size)[:3])
    print(f"{args.out}: {len(wheels)} wheels for Python {args.python_version}, {size / mib:.1f} MiB (largest: {largest} "
          f"MiB); with the working tree's {tree / mib:.1f} MiB, {(size + tree) / mib:.1f} MiB of the {CARRY_LIMIT_MIB} MiB "
          "a command may take along to the GPU machine")
    if size + tree > CARRY_LIMIT_MIB * mib:
        sys.exit(f"over the {CARRY_LIMIT_MIB} MiB limit: the GPU machine would not receive it")


if __name__ == "__main__":
    main()
