"""The ``fewshot`` command line: parse, read the stage's spec, call the stage.

Every workflow stage takes its settings as one ``--spec`` JSON (the rule's parameter, read back
into the stage's dataclass) and its files as paths. Heavy modules (torch) are imported inside the
stages that use them, so ``fewshot --help`` and the light stages start fast.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fewshot_core import settings, specs, stages
from fewshot_core.errors import ArtifactError, ConfigError, DataError, MaskError, MetricError, SplitError

#: The device a job runs on, set by the workflow: a result-neutral setting, so no rule's parameter.
DEVICE_VARIABLE = "FEWSHOT_DEVICE"
#: The folder of the package the workflow imported (its checkout's), set by the workflow: a job that
#: imported another copy would compute with other code than its record names, so it stops.
PACKAGE_VARIABLE = "FEWSHOT_PACKAGE"
PACKAGE = Path(__file__).resolve().parent
#: Errors that a user's file or setting causes: shown as one message, never as a traceback.
USER_ERRORS = (ArtifactError, ConfigError, DataError, MaskError, MetricError, SplitError)

# name: (spec class, the stage, its path options (flag, help; "*" after a flag: several paths, "?": optional))
STAGES: dict[str, tuple[type, Callable, list[tuple[str, str]]]] = {
    "make-holdout": (specs.HoldoutSpec, stages.make_holdout, [("--out", "the holdout JSON")]),
    "train-root": (specs.RootSpec, stages.train_root, [
        ("--holdout", "the seed's holdout JSON"), ("--out", "the root weights"),
        ("--checkpoints", "folder of in-progress checkpoints"), ("--device", "auto, cpu or cuda[:i]")]),
    "score-edges": (specs.ScoreSpec, stages.score_edges, [
        ("--holdout", "the seed's holdout JSON"), ("--weights", "the root's or the level's node weights"),
        ("--previous*", "split files of the levels above"), ("--out", "the scores table"),
        ("--device", "auto, cpu or cuda[:i]")]),
    "split-nodes": (specs.SplitSpec, stages.split_nodes, [
        ("--scores", "the level's scores table"), ("--previous*", "split files of the levels above"),
        ("--out", "the level's split file")]),
    "train-children": (specs.ChildrenSpec, stages.train_children, [
        ("--holdout", "the seed's holdout JSON"), ("--parent-weights", "the level above's weights"),
        ("--splits*", "split files of the levels above"), ("--out", "the level's node weights"),
        ("--checkpoints", "folder of in-progress checkpoints"), ("--device", "auto, cpu or cuda[:i]")]),
    "train-leaves": (specs.LeavesSpec, stages.train_leaves, [
        ("--holdout", "the seed's holdout JSON"), ("--splits*", "every level's split file"),
        ("--pretrained?", "the seed's pretrained one-shot supernet (protocol transfer)"),
        ("--out-table", "the evaluated architectures"), ("--out-weights", "the trained leaves' weights"),
        ("--checkpoints", "folder of in-progress checkpoints"), ("--device", "auto, cpu or cuda[:i]")]),
    "pretrain-oneshot": (specs.PretrainSpec, stages.pretrain_oneshot, [
        ("--holdout", "the seed's holdout JSON"), ("--out", "the pretrained one-shot supernet"),
        ("--checkpoints", "folder of in-progress checkpoints"), ("--device", "auto, cpu or cuda[:i]")]),
    "sample-study-set": (specs.StudySetSpec, stages.sample_study_set, [("--out", "the study set JSON")]),
    "train-standalone": (specs.StandaloneSpec, stages.train_standalone, [
        ("--study-set", "the study set JSON"), ("--holdout", "the study seed's holdout JSON"),
        ("--out", "the chunk's ground-truth table"), ("--checkpoints", "folder of in-progress checkpoints"),
        ("--device", "auto, cpu or cuda[:i]")]),
    "train-oneshot": (specs.OneShotSpec, stages.train_oneshot, [
        ("--holdout", "the seed's holdout JSON"), ("--pretrained?", "the seed's pretrained one-shot supernet"),
        ("--out", "the one-shot baseline's weights"), ("--checkpoints", "folder of in-progress checkpoints"),
        ("--device", "auto, cpu or cuda[:i]")]),
    "evaluate-study": (specs.StudyEvalSpec, stages.evaluate_study, [
        ("--study-set", "the study set JSON"), ("--holdout", "the seed's holdout JSON"),
        ("--splits*", "every level's split file of the tree"), ("--leaf-weights*", "the tree's leaf weights, by chunk"),
        ("--out", "the tree's study table"), ("--device", "auto, cpu or cuda[:i]")]),
    "evaluate-oneshot": (specs.OneShotEvalSpec, stages.evaluate_oneshot, [
        ("--study-set", "the study set JSON"), ("--holdout", "the seed's holdout JSON"),
        ("--oneshot", "the one-shot baseline's weights"), ("--out", "its study table"),
        ("--device", "auto, cpu or cuda[:i]")]),
    "score-study": (specs.ZeroCostSpec, stages.score_study, [
        ("--study-set", "the study set JSON"), ("--holdout", "the study seed's holdout JSON"),
        ("--out", "the training-free scores of a chunk"), ("--device", "auto, cpu or cuda[:i]")]),
    "read-benchmark": (specs.BenchmarkSpec, stages.read_benchmark, [
        ("--study-set", "the study set JSON"), ("--out", "the study architectures' accuracies in the benchmark")]),
    "rank-study": (specs.RankingSpec, stages.rank_study, [
        ("--truth*", "the benchmark's table, or every ground-truth table in (seed, chunk) order"),
        ("--studies*", "every tree's study table, in (metric, seed, chunk) order"),
        ("--oneshots*", "every one-shot baseline's study table, in (seed, budget, chunk) order"),
        ("--zero-cost*", "every training-free table, in (metric, chunk) order"),
        ("--out", "ranking.parquet"), ("--out-summary", "study_summary.parquet")]),
    "collect-leaves": (specs.TreesSpec, stages.collect_leaves, [
        ("--tables*", "every leaf table, in (metric, seed, chunk) order"), ("--out", "leaves.parquet")]),
    "compute-split-distances": (specs.TreesSpec, stages.compute_split_distances, [
        ("--splits*", "every split file, in (metric, seed, level) order"), ("--out-splits", "splits.parquet"),
        ("--out-distance", "split_distance.parquet")]),
    "draw-ranking": (specs.FiguresSpec, stages.draw_ranking, [
        ("--ranking", "ranking.parquet"), ("--summary", "study_summary.parquet"),
        ("--out", "the figure's PNG (PDF and CSV beside it)")]),
    "draw-figures": (specs.FiguresSpec, stages.draw_figures, [
        ("--splits", "splits.parquet"), ("--distance", "split_distance.parquet"), ("--out-dir", "figures folder")]),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (spec_cls, stage, paths) in STAGES.items():
        doc = (stage.__doc__ or "").splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc)
        p.add_argument("--spec", required=True, help=f"the stage's settings as JSON ({spec_cls.__name__})")
        for flag, help_ in paths:
            many = flag.endswith("*")
            if flag == "--device":
                p.add_argument(flag, default=os.environ.get(DEVICE_VARIABLE, "auto"),
                               help=f"{help_} (default: ${DEVICE_VARIABLE}, else auto)")
                continue
            p.add_argument(flag.rstrip("*?"), nargs="*" if many else None, default=[] if many else None,
                           required=not (many or flag.endswith("?")), help=help_)
    p = sub.add_parser("summary", help="print a finished run's splits and split distances as tables")
    p.add_argument("run_dir", type=Path, help="a run's results folder, e.g. results/default")
    return parser


def _terminate(signum: int, _frame) -> None:
    """SIGTERM as an exception, so that temporary files are removed on the way out."""
    raise SystemExit(128 + signum)


def check_package() -> None:
    """:class:`ConfigError` when this process imported another copy of the package than the workflow's."""
    wanted = os.environ.get(PACKAGE_VARIABLE)
    if wanted and Path(wanted).resolve() != PACKAGE:
        raise ConfigError(f"this job imported fewshot_core from {PACKAGE}, but the workflow runs the one in {wanted}: "
                          "its results would come from other code than its record names. Install the workflow's "
                          f"checkout where its jobs run (`pip install -e {Path(wanted).parent}`), or start Snakemake "
                          "with the Python whose `fewshot` command imports it")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        check_package()
        if args.command == "summary":
            from fewshot_core.report import summary  # matplotlib: only this command and the figures need it

            print(summary(args.run_dir))
            return
        spec_cls, stage, paths = STAGES[args.command]
        try:
            kwargs = {"spec": settings.spec_from_json(spec_cls, args.spec)}
        except ValueError as err:
            raise ConfigError(f"--spec is not a valid {spec_cls.__name__}: {err}") from err
        for flag, _ in paths:
            name = flag.rstrip("*?").lstrip("-").replace("-", "_")
            value = getattr(args, name)
            kwargs[name] = (value if name == "device" or value is None else
                            [Path(v) for v in value] if isinstance(value, list) else Path(value))
        stage(**kwargs)
    except USER_ERRORS as err:
        print(f"fewshot {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        print(f"fewshot {args.command}: error: {err.strerror} ({err.filename or 'while writing an output'}): nothing "
              "half-written was left; free space (or fix the permissions) and rerun the workflow, which resumes "
              "from the last checkpoint", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"fewshot {args.command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
