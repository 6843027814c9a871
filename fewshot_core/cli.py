"""The ``fewshot`` command line: parse, read the stage's spec, call the stage.

Every workflow stage takes its settings as one ``--spec`` JSON (the rule's parameter, read back
into the stage's dataclass) and its files as paths. Heavy modules (torch) are imported inside the
stages that use them, so ``fewshot --help`` and the light stages start fast.
"""

from __future__ import annotations

import argparse
import errno
import inspect
import os
import signal
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from fewshot_core import settings, stages
from fewshot_core.errors import ArtifactError, ConfigError, DataError, MaskError, MetricError, SplitError

#: The device a job runs on, set by the workflow: a result-neutral setting, so no rule's parameter.
DEVICE_VARIABLE = "FEWSHOT_DEVICE"
#: The folder of the package the workflow imported (its checkout's), set by the workflow: a job that
#: imported another copy would compute with other code than its record names, so it stops.
PACKAGE_VARIABLE = "FEWSHOT_PACKAGE"
PACKAGE = Path(__file__).resolve().parent
#: Errors that a user's file or setting causes: shown as one message, never as a traceback.
USER_ERRORS = (ArtifactError, ConfigError, DataError, MaskError, MetricError, SplitError)

#: What each file option of the stages holds, by parameter name (a stage's options are its function's
#: parameters: ``list[Path]`` takes several paths, ``Path | None`` may be left out).
OPTIONS = {
    "holdout": "the seed's holdout JSON", "study_set": "the study set JSON", "weights": "the weights it is scored with",
    "previous": "split files of the levels above", "scores": "the level's scores table",
    "parent_weights": "the level above's weights", "splits": "split files, in (metric, seed, level) order",
    "pretrained": "the seed's pretrained one-shot supernet (protocol transfer)",
    "leaf_weights": "the tree's leaf weights, by chunk", "oneshot": "the one-shot baseline's weights",
    "truth": "the benchmark's table, or every ground-truth table in (seed, chunk) order",
    "studies": "every tree's study table, in (metric, seed, chunk) order",
    "oneshots": "every one-shot baseline's study table, in (seed, budget, chunk) order",
    "zero_cost": "every training-free table, in (metric, chunk) order",
    "tables": "every leaf table, in (metric, seed, chunk) order", "ranking": "ranking.parquet",
    "summary": "study_summary.parquet", "distance": "split_distance.parquet", "out": "the output file",
    "out_table": "the evaluated architectures", "out_weights": "the trained leaves' weights",
    "out_summary": "study_summary.parquet", "out_splits": "splits.parquet", "out_distance": "split_distance.parquet",
    "out_dir": "the figures' folder", "checkpoints": "folder of in-progress checkpoints",
    "device": "auto, cpu or cuda[:i]",
}


def _stages() -> dict[str, Callable]:
    """Every stage function, by its command's name: one per rule of the output catalogue and the figures."""
    from fewshot_core.outputs import FIGURES, OUTPUTS

    rules = dict.fromkeys([o.rule for o in OUTPUTS.values()] + [f.rule for f in FIGURES.values()])
    return {rule.replace("_", "-"): getattr(stages, rule) for rule in rules}


def code_version_of(rule: str) -> None:
    """Digest the code of every output ``rule`` makes (cached for the job's records): at its start, so that
    an edit made while the job runs is not named as the code that made its outputs."""
    from fewshot_core.outputs import OUTPUTS, code_version

    for output in OUTPUTS.values():
        if output.rule == rule:
            code_version(output)


def options(stage: Callable) -> tuple[type, dict[str, str]]:
    """A stage's spec class and its options: ``{parameter: "one" | "several" | "optional"}`` (``device`` and the
    log aside), read from its signature."""
    hints = typing.get_type_hints(stage)
    kinds = {}
    for name in inspect.signature(stage).parameters:
        if name in ("spec", "log"):
            continue
        hint = hints[name]
        kinds[name] = ("several" if typing.get_origin(hint) is list else
                       "optional" if type(None) in typing.get_args(hint) else "one")
    return hints["spec"], kinds


STAGES = _stages()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():
        doc = (stage.__doc__ or "").splitlines()[0]
        spec_cls, kinds = options(stage)
        p = sub.add_parser(name, help=doc, description=doc)
        p.add_argument("--spec", required=True, help=f"the stage's settings as JSON ({spec_cls.__name__})")
        for option, kind in kinds.items():
            flag = "--" + option.replace("_", "-")
            if option == "device":
                p.add_argument(flag, default=os.environ.get(DEVICE_VARIABLE, "auto"),
                               help=f"{OPTIONS[option]} (default: ${DEVICE_VARIABLE}, else auto)")
                continue
            p.add_argument(flag, nargs="*" if kind == "several" else None, default=[] if kind == "several" else None,
                           required=kind == "one", help=OPTIONS[option])
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
        stage = STAGES[args.command]
        code_version_of(stage.__name__)  # the code it is about to run, digested before it runs
        spec_cls, kinds = options(stage)
        try:
            kwargs = {"spec": settings.spec_from_json(spec_cls, args.spec)}
        except ValueError as err:
            raise ConfigError(f"--spec is not a valid {spec_cls.__name__}: {err}") from err
        for option in kinds:
            value = getattr(args, option)
            kwargs[option] = (value if option == "device" or value is None else
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
