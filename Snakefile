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


# Targets name the per-tree files too: Snakemake does not remake a deleted intermediate file whose
# downstream outputs are up to date, so a file a user deletes to recover is remade only if asked for.
rule all:
    default_target: True
    input:
        all_split_files(),
        all_leaf_tables(),
        run_tables()["splits"],
        run_tables()["distance"],
        run_tables()["leaves"],
        rules.draw_figures.output,
        study_targets(),


rule splits:
    input:
        all_split_files(),
        run_tables()["splits"],
        run_tables()["distance"],


rule leaves:
    input:
        all_leaf_tables(),
        run_tables()["leaves"],


rule report:
    input:
        rules.draw_figures.output,
        study_targets(),


rule study:
    input:
        study_targets(),
