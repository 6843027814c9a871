"""A small NAS-Bench-201 / NATS-Bench archive in the benchmark's own fast-mode layout, made with the
benchmark package's own classes: the meta file lists all 15,625 architectures, and a handful of them
have their own file with known accuracies."""

from __future__ import annotations

from pathlib import Path

from fewshot_core.nb201 import architectures, full_mask

#: (dataset, set names) the archive records, as NATS-Bench does for each.
SETS = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",)}
SEEDS = (777, 888)


def accuracy(index: int, dataset: str, setname: str, seed: int, hp: str) -> float:
    """The accuracy (in percent, as the benchmark stores it) written for one trial: distinct per architecture."""
    return 50.0 + (index * 7919 % 4000) / 100 + (1.0 if setname == "ori-test" else 0.0) + (seed - 777) / 1000 \
        + (5.0 if hp == "200" else 0.0) + (0.5 if dataset == "cifar10" else 0.0)


def write_archive(folder: Path, archs: list[str], epochs: dict[str, int] | None = None) -> Path:
    """The archive in ``folder``: meta.pickle.pbz2 and one file for each of ``archs``."""
    from nats_bench.api_utils import ArchResults, ResultsCount, pickle_save

    epochs = epochs or {"12": 12, "200": 200}
    folder.mkdir(parents=True, exist_ok=True)
    meta = architectures(full_mask())
    pickle_save({"meta_archs": meta}, str(folder / "meta.pickle"))
    for arch in archs:
        index = meta.index(arch)
        per_hp = {}
        for hp, n in epochs.items():
            record = ArchResults(index, arch)
            for dataset, sets in SETS.items():
                record.dataset_seed[dataset] = list(SEEDS)
                for seed in SEEDS:
                    result = ResultsCount(dataset, None, {e: 10.0 for e in range(n)}, {e: 2.0 for e in range(n)},
                                          0.1, 10.0, {"arch_str": arch}, seed, n, None)
                    accs, losses, times = {}, {}, {}
                    for setname in sets:
                        for e in range(n):
                            accs[f"{setname}@{e}"] = accuracy(index, dataset, setname, seed, hp)
                            losses[f"{setname}@{e}"] = 1.0 - accs[f"{setname}@{e}"] / 100
                            times[f"{setname}@{e}"] = 0.1
                    result.update_eval(accs, losses, times)
                    record.all_results[(dataset, seed)] = result
            per_hp[hp] = record.state_dict()
        pickle_save(per_hp, str(folder / f"{index:06d}.pickle"))
    return folder


def write_complete_archive(folder: Path) -> Path:
    """An archive with every connected architecture's file present, as a full download has them: the meta
    file and the first study architecture's file real (what the check before any job reads), the others
    empty (what it only finds)."""
    from fewshot_core.nb201 import study_set

    archs = study_set(15284, 0)[0]
    write_archive(folder, archs[:1])
    meta = architectures(full_mask())
    for arch in archs[1:]:
        (folder / f"{meta.index(arch):06d}.pickle.pbz2").touch()
    return folder
