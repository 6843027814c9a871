# Helpers shared by the workflow files: output paths and the expansion of the configuration.
import json
import os

from fewshot_core.checks import check_config
from fewshot_core.pipeline import metric_code_hash

RUN = f"results/{config['run']}"
FACTORS = check_config(config)
METRICS = list(config["metrics"])


wildcard_constraints:
    metric="|".join(METRICS),
    seed=r"\d+",
    level=r"\d+",


def data_splits():
    """The train/validation split file of every seed."""
    return expand(f"{RUN}/data/split_seed{{seed}}.json", seed=config["seeds"])


def previous_splits(wildcards):
    """The split files of the levels above ``wildcards.level`` in the same tree."""
    return [
        f"{RUN}/{wildcards.metric}/seed{wildcards.seed}/split_L{level}.json"
        for level in range(int(wildcards.level))
    ]


def all_splits():
    """Every level's split file of every metric and seed."""
    return expand(
        f"{RUN}/{{metric}}/seed{{seed}}/split_L{{level}}.json",
        metric=METRICS,
        seed=config["seeds"],
        level=range(len(FACTORS)),
    )


def metric_settings(wildcards):
    """One metric's settings as canonical JSON: a change reruns that metric's jobs alone."""
    return json.dumps(config["metrics"][wildcards.metric].get("settings", {}), sort_keys=True)


WARMUP = config["training"]["warmup"]


def warmup_args():
    """The command-line options of the warm-up settings (0 epochs: metrics at initialisation)."""
    return (
        f"--warmup-epochs {WARMUP['epochs']} --warmup-batch-size {WARMUP['batch_size']}"
        f" --warmup-mode {WARMUP['mode']}"
    )


def parent_weights(wildcards):
    """The level above's node weights, which a warmed-up level inherits (none without warm-up)."""
    level = int(wildcards.level)
    if WARMUP["epochs"] == 0 or level < 2:
        return []
    return f"{RUN}/{wildcards.metric}/seed{wildcards.seed}/weights_L{level - 1}.pt"


def metric_code(wildcards):
    """Hash of the metric's source: editing it reruns that metric's jobs."""
    return metric_code_hash(wildcards.metric)


def tree_args():
    """The command-line options that describe the tree."""
    tree = config["tree"]
    order = ",".join(str(e) for e in tree.get("edge_order", []))
    return (
        f"--factors {','.join(map(str, FACTORS))} --edge-selection {tree['edge_selection']}"
        + (f" --edge-order {order}" if order else "")
    )


def leaf_chunks():
    """The leaves of one tree, grouped ``leaves_per_job`` to a job (a coarse fan-out saves process
    starts on a workstation; one leaf per job lets a cluster train them in parallel)."""
    from fewshot_core.splitting import tree_levels

    leaves = tree_levels(FACTORS)[-1]
    size = config["training"]["leaves"]["leaves_per_job"]
    return [leaves[i : i + size] for i in range(0, len(leaves), size)]


def all_leaf_tables():
    return expand(
        f"{RUN}/{{metric}}/seed{{seed}}/leaves/chunk{{chunk}}.parquet",
        metric=METRICS,
        seed=config["seeds"],
        chunk=range(len(leaf_chunks())),
    )


def tree_splits(wildcards):
    """Every level's split file of one tree."""
    return [
        f"{RUN}/{wildcards.metric}/seed{wildcards.seed}/split_L{level}.json"
        for level in range(len(FACTORS))
    ]


def train_args():
    """The command-line options of the leaf training settings."""
    t = config["training"]
    leaves, opt = t["leaves"], t["optimizer"]
    return (
        f"--epochs {leaves['epochs']} --batch-size {leaves['batch_size']} --mode {leaves['mode']}"
        f" --archs {leaves['archs']} --lr {opt['lr']} --lr-min {opt['lr_min']}"
        f" --momentum {opt['momentum']} --weight-decay {opt['weight_decay']} --grad-clip {opt['grad_clip']}"
        + ("" if leaves["augment"] else " --no-augment")
    )
