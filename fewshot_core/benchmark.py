"""NAS-Bench-201's own accuracies as the ranking study's ground truth, read with its authors' package.

NATS-Bench's topology search space is NAS-Bench-201's: the same 15,625 cells, written in the same
architecture strings (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``), with every architecture trained for
12 and 200 epochs on four datasets. The user downloads the benchmark's files (the ``fast_mode``
archive: a folder of ``meta.pickle.pbz2`` and one ``<index>.pickle.pbz2`` per architecture) and
gives their path; they are pickles, loaded only through the ``nats_bench`` package (``create(path,
"tss", fast_mode=True)``), only from that path, and only when ``study.ground_truth.source`` is
``nats_bench``. :func:`check` runs before any job; :func:`read` in the job that reads the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fewshot_core.columns import BENCHMARK_COLUMNS
from fewshot_core.errors import ConfigError, DataError

DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
#: The benchmark's evaluation set holding each accuracy (NATS-Bench's ``get_metrics`` set names).
SETS = {"cifar10-valid": {"valid": "x-valid", "test": "ori-test"}, "cifar10": {"test": "ori-test"},
        "cifar100": {"valid": "x-valid", "test": "x-test"}, "ImageNet16-120": {"valid": "x-valid", "test": "x-test"}}
#: The datasets of this tool each benchmark dataset can be compared with (``synthetic``: the tests').
DATA = {"cifar10-valid": ("cifar10", "synthetic"), "cifar10": ("cifar10", "synthetic"), "cifar100": ("synthetic",),
        "ImageNet16-120": ("synthetic",)}
EXT = "pickle.pbz2"
KEY = "study.ground_truth"


def meta_file(path: str | Path) -> Path:
    return Path(path) / f"meta.{EXT}"


def arch_file(path: str | Path, index: int) -> Path:
    """An architecture's file in the archive, under either of the names the package looks for."""
    long = Path(path) / f"{index:06d}.{EXT}"
    return long if long.exists() else Path(path) / f"{index:d}.{EXT}"


def files(path: str | Path, indices: Sequence[int]) -> list[Path]:
    """The archive's files a table of the architectures ``indices`` is read from: the meta file and theirs."""
    return [meta_file(path), *(arch_file(path, i) for i in sorted(set(indices)))]


def _api(path: str | Path):
    """The package's API over the archive at ``path`` (fast mode: each architecture read when asked for)."""
    try:
        import nats_bench
    except ImportError as err:
        raise ConfigError(f"{KEY}.source: nats_bench is not installed (pip install nats_bench)") from err
    try:
        return nats_bench.create(str(path), "tss", fast_mode=True, verbose=False)
    except Exception as err:  # the package raises ValueError, EOFError, pickle and bz2 errors for a bad file
        raise ConfigError(f"{KEY}.path: {meta_file(path)} cannot be read by nats_bench ({type(err).__name__}: "
                          f"{err}); download the benchmark's fast-mode archive again") from err


def _trials(api, path: Path, arch: str, dataset: str, hp: str):
    """The benchmark's record of ``arch`` at ``hp`` and the seeds of its trials on ``dataset``."""
    index = api.query_index_by_arch(arch)
    if index < 0:
        raise DataError(f"{arch} is not in the benchmark at {path}")
    try:
        record = api.query_meta_info_by_index(index, hp=hp)
    except AssertionError as err:  # the package asserts a file exists and holds a dict
        raise DataError(f"{arch_file(path, index)}: {err}") from err
    except ValueError as err:
        if "hyper-parameters" in str(err):
            raise
        raise DataError(f"{arch_file(path, index)} cannot be read by nats_bench ({err})") from err
    except Exception as err:  # a damaged file: bz2, EOF and unpickling errors
        raise DataError(f"{arch_file(path, index)} cannot be read by nats_bench ({type(err).__name__}: {err}); "
                        "download the benchmark again") from err
    if dataset not in record.get_dataset_names():
        raise DataError(f"{arch_file(path, index)} has no results on {dataset!r} (it has "
                        f"{record.get_dataset_names()})")
    return index, record, record.get_dataset_seeds(dataset)


def check(path: str | None, dataset: str, hp: str, accuracy: str, data_name: str, archs: Sequence[str],
          workdir: str | Path = ".") -> None:
    """Everything about the benchmark that would make a job fail, before any job: the path, its layout,
    the dataset against the study's data, the set the accuracy is read on, the hyper-parameter set, the
    meta file and the first study architecture's file read through the package, every other one present."""
    if path is None:
        raise ConfigError(f"{KEY}.path: give the folder of the benchmark's fast-mode archive "
                          "(NATS-tss-v1_0-3ffb9-simple, with meta.pickle.pbz2 in it)")
    folder = Path(workdir, path)
    if not folder.is_dir():
        raise ConfigError(f"{KEY}.path: {str(folder)!r} is not a folder; give the benchmark's fast-mode archive, "
                          "NATS-tss-v1_0-3ffb9-simple, extracted")
    if not meta_file(folder).is_file():
        raise ConfigError(f"{KEY}.path: {folder} holds no meta.{EXT}: it is not the layout nats_bench reads in fast "
                          "mode (extract NATS-tss-v1_0-3ffb9-simple.tar and give that folder)")
    if data_name not in DATA[dataset]:
        raise ConfigError(f"{KEY}.dataset: {dataset!r} ranks architectures trained on another dataset than "
                          f"data.name {data_name!r}; use data.name {DATA[dataset][0]!r} or another "
                          f"{KEY}.dataset")
    if accuracy not in SETS[dataset]:
        raise ConfigError(f"{KEY}.accuracy: {dataset!r} has no {accuracy} set in the benchmark; use "
                          f"{' or '.join(SETS[dataset])}")
    api = _api(folder)
    if len(api.meta_archs) != 15625:
        raise ConfigError(f"{KEY}.path: {meta_file(folder)} lists {len(api.meta_archs)} architectures, not "
                          "NAS-Bench-201's 15,625")
    missing = [a for a in archs if api.query_index_by_arch(a) < 0]
    if missing:
        raise ConfigError(f"{KEY}.path: {missing[0]} is not in the benchmark's list of architectures")
    absent = [arch_file(folder, api.query_index_by_arch(a)) for a in archs
              if not arch_file(folder, api.query_index_by_arch(a)).is_file()]
    if absent:
        raise ConfigError(f"{KEY}.path: {absent[0]} is missing ({len(absent)} of the study's {len(archs)} "
                          "architectures' files are); download the whole archive")
    try:
        _trials(api, folder, archs[0], dataset, hp)
    except ValueError as err:
        raise ConfigError(f"{KEY}.hp: {err}") from err
    except DataError as err:
        raise ConfigError(f"{KEY}.path: {err}") from err


def read(path: str | Path, archs: Sequence[str], dataset: str, hp: str, accuracy: str):
    """One row per architecture and trial: the benchmark's index, the trial's seed, and its accuracy (a share,
    not a percentage) and loss on the configured set after the last epoch of training budget ``hp``."""
    import pandas as pd

    api = _api(path)
    rows = []
    for arch in archs:
        try:
            index, record, seeds = _trials(api, Path(path), arch, dataset, hp)
        except ValueError as err:  # the start-up check reads the first architecture's file, not every one
            raise DataError(f"{KEY}.hp: {arch}: {err}; this archive lacks that budget for some architectures: "
                            "use a complete archive or another hp") from err
        for trial, seed in enumerate(seeds):
            m = record.get_metrics(dataset, SETS[dataset][accuracy], is_random=seed)
            rows.append({"arch": arch, "index": index, "trial": trial, "seed": int(seed),
                         "accuracy": float(m["accuracy"]) / 100, "loss": float(m["loss"])})
    return pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))
