# Helpers of the workflow: the run's settings, one function per path template, input functions.
import os

from fewshot_core.checks import load_settings_or_exit
from fewshot_core.settings import canonical_json

# The whole configuration is checked here, before any job: a bad value stops the run, naming its key.
SETTINGS, filled = load_settings_or_exit(config, local=workflow.local_exec)
config.update(filled)  # the schema's defaults, for the report's captions
RUN = f"results/{SETTINGS.run}"
METRICS = list(SETTINGS.metrics)
SEEDS = list(SETTINGS.seeds)
LEVELS = list(range(SETTINGS.levels))
CHUNKS = list(range(len(SETTINGS.leaf_chunks())))


wildcard_constraints:
    metric="|".join(METRICS),
    seed=r"\d+",
    level=r"\d+",
    chunk=r"\d+",


# ---------------------------------------------------------------- path templates (wildcards by default)


def holdout(seed="{seed}"):
    """The seed's train/validation split of the training images."""
    return f"{RUN}/data/holdout_seed{seed}.json"


def root_weights(seed="{seed}"):
    """The seed's root supernet, shared by every metric."""
    return f"{RUN}/seed{seed}/root.pt"


def scores(metric="{metric}", seed="{seed}", level="{level}"):
    return f"{RUN}/{metric}/seed{seed}/scores_L{level}.parquet"


def split_file(metric="{metric}", seed="{seed}", level="{level}"):
    return f"{RUN}/{metric}/seed{seed}/split_L{level}.json"


def children_weights(metric="{metric}", seed="{seed}", level="{level}"):
    """The nodes of a level after their warm-up (only made when warm-up epochs > 0)."""
    return f"{RUN}/{metric}/seed{seed}/nodes_L{level}.pt"


def leaf_table(metric="{metric}", seed="{seed}", chunk="{chunk}"):
    return f"{RUN}/{metric}/seed{seed}/leaves/chunk{chunk}.parquet"


def leaf_weights(metric="{metric}", seed="{seed}", chunk="{chunk}"):
    return f"{RUN}/{metric}/seed{seed}/leaves/chunk{chunk}.pt"


def oneshot_weights(seed="{seed}"):
    """The seed's one-shot supernet, trained as long as all the leaves of a tree (ranking study)."""
    return f"{RUN}/seed{seed}/oneshot.pt"


def study_file(name):
    return f"{RUN}/study/{name}"


def checkpoints(*parts):
    """Where a training job keeps its checkpoints while it runs (deleted when it ends)."""
    return os.path.join(RUN, "checkpoints", *parts)


def log_file(rule, name):
    return f"{RUN}/logs/{rule}/{name}.log"


def benchmark_file(rule, name):
    return f"{RUN}/benchmarks/{rule}/{name}.tsv"


# ---------------------------------------------------------------- input functions


def level_weights(metric, seed, level):
    """The weights a level's nodes are scored with: their own after warm-up, else the root's."""
    if SETTINGS.trains_children(int(level)):
        return children_weights(metric, seed, level)
    return root_weights(seed)


def get_scoring_weights(wildcards):
    return level_weights(wildcards.metric, wildcards.seed, wildcards.level)


def get_parent_weights(wildcards):
    return level_weights(wildcards.metric, wildcards.seed, int(wildcards.level) - 1)


def get_splits_above(wildcards):
    """The split files of the levels above ``wildcards.level`` in the same tree."""
    return [
        split_file(wildcards.metric, wildcards.seed, level)
        for level in range(int(wildcards.level))
    ]


def get_tree_splits(wildcards):
    """Every level's split file of one tree."""
    return [split_file(wildcards.metric, wildcards.seed, level) for level in LEVELS]


def get_seed_splits(wildcards):
    """Every split file of the seed's trees, in (metric, level) order."""
    return [split_file(m, wildcards.seed, level) for m in METRICS for level in LEVELS]


def get_seed_leaf_weights(wildcards):
    """Every leaf weights file of the seed's trees, in (metric, chunk) order."""
    return [leaf_weights(m, wildcards.seed, c) for m in METRICS for c in CHUNKS]


def all_split_files():
    """Every split file of the run, in (metric, seed, level) order."""
    return [split_file(m, s, level) for m in METRICS for s in SEEDS for level in LEVELS]


def all_leaf_tables():
    """Every leaf table of the run, in (metric, seed, chunk) order."""
    return [leaf_table(m, s, c) for m in METRICS for s in SEEDS for c in CHUNKS]


def run_tables():
    return {
        "splits": f"{RUN}/splits.parquet",
        "distance": f"{RUN}/split_distance.parquet",
        "leaves": f"{RUN}/leaves.parquet",
        "ranking": f"{RUN}/ranking.parquet",
    }


def study_targets():
    """The ranking study's table and figure, when the configuration asks for a study."""
    if not SETTINGS.studies:
        return []
    return [run_tables()["ranking"], figure("ranking")]


FIGURES = {
    "fig1_split_distance": ("Split distance", "fig1.rst"),
    "fig2_split_distance_by_level": ("Split distance", "fig2.rst"),
    "between_metrics": ("Beyond the paper", "between.rst"),
    "trees": ("Beyond the paper", "trees.rst"),
}


# The figures whose plotted values are written beside them (one row per split).
PLOTTED_DATA = ["fig1_split_distance", "fig2_split_distance_by_level"]


def figure(name, ext="png"):
    return f"{RUN}/figures/{name}.{ext}"


# ---------------------------------------------------------------- parameters


def spec_json(spec):
    """A stage's spec as the one canonical JSON parameter of its rule."""
    return canonical_json(spec)


def get_metric_code(wildcards):
    """A hash of the level's metrics' sources: editing one reruns the jobs that use it alone."""
    return SETTINGS.metrics[wildcards.metric].levels[int(wildcards.level)].code_hash()


GPUS = config["training"]["gpus"]
