# Few-shot NAS with zero-cost metrics: the workflow. Rules live in workflow/rules/.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/leaves.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        f"{RUN}/splits.parquet",
        f"{RUN}/split_distance.parquet",
        f"{RUN}/leaves.parquet",
        rules.figures.output,
    default_target: True


rule report:
    input:
        rules.figures.output,


rule leaves:
    input:
        f"{RUN}/leaves.parquet",


rule splits:
    input:
        all_splits(),
