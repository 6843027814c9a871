# Few-shot NAS with zero-cost metrics: the workflow. Rules live in workflow/rules/.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/splits.smk"


rule all:
    input:
        f"{RUN}/splits.parquet",
        f"{RUN}/split_distance.parquet",
    default_target: True


rule splits:
    input:
        all_splits(),
