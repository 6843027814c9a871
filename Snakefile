# Few-shot NAS with zero-cost metrics: the workflow. Rules live in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile given on the command line is the run's whole configuration: the default file is
# read only when there is none, so nothing of it merges into another experiment.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tree.smk"
include: "workflow/rules/leaves.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/study.smk"


# Jobs of about a second run where Snakemake runs, never through a cluster's queue: there, each
# would wait its turn and start a fresh process for a second's work (docs/design.md §10).
localrules:
    make_holdout,
    split_nodes,
    collect_leaves,
    compute_split_distances,
    sample_study_set,


# Targets name the per-tree files too: Snakemake does not remake a deleted intermediate file whose
# downstream outputs are up to date, so a file a user deletes to recover is remade only if asked for.
TARGETS = {
    "all": [
        *all_of("splits"),
        *all_of("leaves"),
        out("splits_table"),
        out("split_distance"),
        out("leaves_table"),
        *rules.draw_figures.output,
        *study_targets(),
    ],
    "splits": [*all_of("splits"), out("splits_table"), out("split_distance")],
    "leaves": [*all_of("leaves"), out("leaves_table")],
    "report": [*rules.draw_figures.output, *study_targets()],
    "study": study_targets(),
}


rule all:
    default_target: True
    input:
        TARGETS["all"],


rule splits:
    input:
        TARGETS["splits"],


rule leaves:
    input:
        TARGETS["leaves"],


rule report:
    input:
        TARGETS["report"],


rule study:
    input:
        TARGETS["study"],


# Before any job: outputs made by other settings or code are scheduled again.
if workflow.is_main_process:
    start_check()


onstart:
    begin_run()


onsuccess:
    end_run()


onerror:
    end_run()
