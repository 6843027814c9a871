# Helpers of the workflow: the run's settings, the path of every output, input functions.
import os
import shlex
import sys
from pathlib import Path

from fewshot_core.checks import load_settings_or_exit
from fewshot_core.cli import DEVICE_VARIABLE, PACKAGE, PACKAGE_VARIABLE
from fewshot_core.outputs import BENCHMARK, LOG, OUTPUTS, figures_of
from fewshot_core.plan import IMAGES_VARIABLE
from fewshot_core.user_metrics import TIME_LIMIT_VARIABLE

# The whole configuration is checked here, before any job: a bad value stops the run, naming its key.
SETTINGS, filled = load_settings_or_exit(
    config,
    workflow.overwrite_configfiles or ["config/config.yaml"],
    local=workflow.local_exec,
)
config.update(filled)  # the schema's defaults, for the report's captions
RUN = f"results/{SETTINGS.run}"


def download_data():
    """Fetch the dataset into data.root when data.download allows it and it is missing: before the rules
    are read, since the holdouts' specs name the digest of its files."""
    from fewshot_core.data import download
    from fewshot_core.errors import DataError

    try:
        if download(SETTINGS.data.name, SETTINGS.data.root):
            print(
                f"{SETTINGS.data.name} downloaded into {SETTINGS.data.root}",
                file=sys.stderr,
            )
    except DataError as err:
        sys.exit(f"data.download: {err}. Nothing was run.")


if SETTINGS.download and workflow.is_main_process:
    download_data()
# The images' digest (in the holdouts' specs) is read once, here, and handed to the processes of cluster
# jobs, which parse the workflow again: each would read CIFAR-10's 170 MB otherwise.
if workflow.is_main_process:
    os.environ[IMAGES_VARIABLE] = SETTINGS.images()
elif IMAGES_VARIABLE in os.environ:
    SETTINGS.use_images(os.environ[IMAGES_VARIABLE])
METRICS = list(SETTINGS.metrics)  # every tree's metric or control
# The device changes how a job runs, not what it computes: it reaches the jobs through their
# environment, not as a parameter, so changing it reruns nothing.
os.environ[DEVICE_VARIABLE] = SETTINGS.device
# So does the time a call of a metric of the user's may take (fewshot_core/user_metrics.py).
os.environ[TIME_LIMIT_VARIABLE] = str(config["user_metric_time_limit"])
# Every job checks that it imports the package this workflow imported (the checkout's), so that the code
# its record names is the code that ran (fewshot_core/cli.py).
os.environ[PACKAGE_VARIABLE] = str(PACKAGE)
# Jobs call the `fewshot` command installed beside the Python that runs Snakemake (.venv/bin), so a
# workflow started as `.venv/bin/snakemake` needs no activated environment.
shell.prefix(
    f'set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; '
)


wildcard_constraints:
    metric="|".join(METRICS),
    seed=r"\d+",
    level=r"\d+",
    chunk=r"\d+",
    gt=r"\d+",
    budget=r"\d+",
    proxy="|".join(SETTINGS.proxies),


# ---------------------------------------------------------------- paths (fewshot_core/outputs.py)


def out(kind, **wildcards):
    """The path of an output of the run; wildcards not given stay wildcards."""
    return OUTPUTS[kind].path(RUN, **wildcards)


def log_file(rule, name):
    return f"{RUN}/{LOG.format(rule=rule, name=name)}"


def benchmark_file(rule, name):
    return f"{RUN}/{BENCHMARK.format(rule=rule, name=name)}"


CHECKPOINTS = f"{RUN}/checkpoints"


# ---------------------------------------------------------------- input functions


def level_weights(metric, seed, level):
    """The weights a level's nodes are scored with (fewshot_core/plan.py decides which)."""
    kind, identity = SETTINGS.level_weights(metric, int(seed), int(level))
    return out(kind, **identity)


def get_scoring_weights(wildcards):
    return level_weights(wildcards.metric, wildcards.seed, wildcards.level)


def get_parent_weights(wildcards):
    return level_weights(wildcards.metric, wildcards.seed, int(wildcards.level) - 1)


def get_splits_above(wildcards):
    """The split files of the levels above ``wildcards.level`` in the same tree."""
    return [
        out("splits", metric=wildcards.metric, seed=wildcards.seed, level=level)
        for level in range(int(wildcards.level))
    ]


def get_tree_splits(wildcards):
    """Every level's split file of one tree."""
    return [
        out("splits", metric=wildcards.metric, seed=wildcards.seed, level=level)
        for level in range(SETTINGS.levels(wildcards.metric))
    ]


def get_tree_leaf_weights(wildcards):
    """Every leaf weights file of one tree, in chunk order."""
    return [
        out("leaf_weights", metric=wildcards.metric, seed=wildcards.seed, chunk=c)
        for c in range(SETTINGS.chunks(wildcards.metric))
    ]


def get_start(wildcards):
    """The weights a leaf or a one-shot baseline starts from: the seed's pretrained one-shot supernet
    under study.protocol transfer, none (a fresh initialisation) under scratch."""
    return (
        {"pretrained": out("pretrained", seed=wildcards.seed)}
        if SETTINGS.study.transfers
        else {}
    )


def start_option(wildcards, input):
    """The command-line option naming the start weights, when there are any."""
    return (
        f"--pretrained {shlex.quote(input.pretrained)}"
        if "pretrained" in input.keys()
        else ""
    )


def all_of(kind):
    """Every file of one kind of output the run makes, in the order of the run's tables."""
    return [out(kind, **identity) for k, identity in SETTINGS.outputs() if k == kind]


def study_targets():
    """The ranking study's table and figure, when the configuration asks for a study."""
    if not SETTINGS.has_study:
        return []
    return [
        out("ranking"),
        out("study_summary"),
        *figures_of("draw_ranking")[0].files(RUN)[:1],
    ]


def figure_pngs(rule):
    """(PNG, caption, report category) of each figure the named rule draws, from fewshot_core/outputs.py."""
    return [
        (f.files(RUN)[0], f"../report/{f.caption}", f.category)
        for f in figures_of(rule)
    ]


def figure_extras(rule):
    """The figures' other files (PDF, and the plotted values' CSV where there is one)."""
    return [path for f in figures_of(rule) for path in f.files(RUN)[1:]]


# ---------------------------------------------------------------- parameters


def spec_json(spec):
    """A stage's spec as the one canonical JSON parameter of its rule."""
    return SETTINGS.canonical(spec)


GPUS = config["training"]["gpus"]


# ---------------------------------------------------------------- the start-up check


def start_check():
    """Compare every existing output's key with the one this configuration and code give it: one line per
    group of stale files, whose stamps are dated now (fewshot_core/freshness.py)."""
    from fewshot_core import freshness
    from fewshot_core.outputs import FIGURES

    planted = freshness.links_line(RUN)
    if planted:
        sys.exit(f"Start-up check: {planted}. Nothing was run.")
    findings = freshness.check(SETTINGS)
    if making_a_report():
        figures = TARGETS["report"]
        kinds = {
            k
            for f in FIGURES.values()
            if f.files(RUN)[0] in figures
            for k in f.made_from
        }
        refusal = freshness.report_refusal(SETTINGS, findings, kinds, figures)
        if refusal:
            sys.exit(
                f"Report: {refusal}: the report would describe results this configuration has not made. Run "
                "the workflow with it first (snakemake --cores N), or write the report with --report-after-run."
            )
    freshness.mark(SETTINGS, findings)
    for line in freshness.report(findings):
        print(line, file=sys.stderr)


def making_a_report():
    """True when Snakemake was started to write a report (``--report``, on its command line or in a
    profile) without running the workflow first: Snakemake's own parser reads its command line again.
    """
    import contextlib
    import io

    from snakemake.cli import parse_args

    if not may_ask_for_a_report(sys.argv[1:]):
        return False
    try:  # quietly: Snakemake already said which profile it reads
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            args = parse_args(sys.argv[1:])[1]
    except BaseException:  # not started as the snakemake command: no report
        return False
    return bool(getattr(args, "report", None)) and not getattr(
        args, "report_after_run", False
    )


def may_ask_for_a_report(args):
    """False when neither the command line nor a profile it names mentions a report: then the full parse of
    the command line (a quarter of a second at every start) is not needed. A profile named but not found
    here (one of the user's own) counts as maybe."""
    if any(a.startswith("--report") for a in args):
        return True
    named = [
        v.split("=", 1)[1]
        for v in args
        if v.startswith(("--profile=", "--workflow-profile="))
    ]
    named += [
        args[i + 1]
        for i, a in enumerate(args[:-1])
        if a in ("--profile", "--workflow-profile")
    ]
    named += [os.environ.get("SNAKEMAKE_PROFILE", ""), "profiles/default"]
    places = [Path(n) for n in named if n]
    if any(not p.exists() for p in places):
        return True
    files = [f for p in places for f in ([p] if p.is_file() else p.glob("*.y*ml"))]
    return any("report" in f.read_text(errors="replace") for f in files)


def stamps(*kinds):
    """An input function: the stamps of the rule's outputs, newer than them when the start-up check found
    them stale, so that Snakemake remakes them (fewshot_core/freshness.py)."""
    from fewshot_core.freshness import stamp

    return lambda wildcards: [
        stamp(out(k, **dict(wildcards.items())), RUN) for k in kinds
    ]


# ---------------------------------------------------------------- the run's start and end


SERVER = []


def begin_run():
    """Before the first job of a real run: start the warm server that forks local jobs
    (fewshot_core/server.py; FEWSHOT_NO_SERVER=1 runs each job on its own)."""
    if not workflow.local_exec or os.environ.get("FEWSHOT_NO_SERVER"):
        return
    from fewshot_core.launch import SERVER_VARIABLE
    from fewshot_core.server import Server

    server = Server()
    if server.wait_ready():
        os.environ[SERVER_VARIABLE] = server.path
        SERVER.append(server)
    else:
        print(
            "the warm server did not start: each job imports torch itself",
            file=sys.stderr,
        )
        server.stop()


def end_run():
    for server in SERVER:
        server.stop()
