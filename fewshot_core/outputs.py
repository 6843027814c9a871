"""The run's outputs, each described once: where it lives, what it holds, and what its record must say.

Every file one job hands to another is an :class:`Output`: its path template under
``results/<run>/``, its provenance kind (the catalogue's key), its format, its columns (tables) or
keys (JSON), the wildcards that identify one file (recorded in its provenance and checked by every
reader), the rule that makes it, the spec of :class:`~fewshot_core.plan.RunSettings` that
decides its content; the code its content depends on is computed from the stage that makes it
(:mod:`fewshot_core.dependencies`). The Snakefile's path helpers, the writers and readers in
:mod:`fewshot_core.stages`, the start-up check (:mod:`fewshot_core.freshness`) and ``summary`` all
take it from here. Torch-free: the workflow imports this module while it parses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from fewshot_core import dependencies, digests
from fewshot_core.columns import (
    BENCHMARK_COLUMNS,
    LEAF_COLUMNS,
    PAIR_COLUMNS,
    RANKING_COLUMNS,
    SCORE_COLUMNS,
    SPLIT_COLUMNS,
    STANDALONE_COLUMNS,
    STUDY_COLUMNS,
    SUMMARY_COLUMNS,
    ZERO_COST_COLUMNS,
)

Format = Literal["parquet", "json", "weights"]


@dataclass(frozen=True)
class Output:
    """One kind of output file of a run."""

    kind: str
    template: str  # under results/<run>/; wildcards {metric}, {seed}, {level}, {chunk}, {gt}, {budget}, {proxy}
    format: Format
    rule: str
    spec: str  # the RunSettings method whose spec decides the content, called with the identity
    identity: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # a table's columns, or a JSON file's keys beside "provenance"
    doc: str = ""

    def path(self, run_dir: str | Path, **wildcards) -> str:
        """The file's path; wildcards not given stay as ``{name}`` for Snakemake."""
        filled = self.template.format_map(_Keep({k: v for k, v in wildcards.items() if v is not None}))
        return f"{run_dir}/{filled}"


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_ENTRIES = [
    Output("holdout", "data/holdout_seed{seed}.json", "json", "make_holdout", "holdout_spec", ("seed",),
           ("train", "val"), "the seeded train/validation split of the training images"),
    Output("root", "seed{seed}/root.pt", "weights", "train_root", "root_spec", ("seed",), (),
           "the seed's root supernet, shared by every metric (warmed up when warm-up epochs > 0)"),
    Output("scores", "{metric}/seed{seed}/scores_L{level}.parquet", "parquet", "score_edges", "score_spec",
           ("metric", "seed", "level"), SCORE_COLUMNS,
           "per node, edge and operation of a level: the variant's value, the parent's, the similarity row"),
    Output("splits", "{metric}/seed{seed}/split_L{level}.json", "json", "split_nodes", "split_spec",
           ("metric", "seed", "level"), ("splits",),
           "per node of a level: the chosen edge, the operation groups, the cut, every scored edge's best cut"),
    Output("nodes", "{metric}/seed{seed}/nodes_L{level}.pt", "weights", "train_children", "children_spec",
           ("metric", "seed", "level"), (), "with warm-up only: the weights of a level's nodes after their warm-up"),
    Output("leaves", "{metric}/seed{seed}/leaves/chunk{chunk}.parquet", "parquet", "train_leaves", "leaves_spec",
           ("metric", "seed", "chunk"), LEAF_COLUMNS,
           "the architectures sampled in some leaves, evaluated with the leaf's weights"),
    Output("leaf_weights", "{metric}/seed{seed}/leaves/chunk{chunk}.pt", "weights", "train_leaves", "leaves_spec",
           ("metric", "seed", "chunk"), (), "those leaves' trained weights"),
    Output("splits_table", "splits.parquet", "parquet", "compute_split_distances", "distances_spec", (),
           SPLIT_COLUMNS, "every split of the run"),
    Output("split_distance", "split_distance.parquet", "parquet", "compute_split_distances", "distances_spec", (),
           PAIR_COLUMNS, "every compared pair of splits (internal, external, between metrics) with its distance"),
    Output("leaves_table", "leaves.parquet", "parquet", "collect_leaves", "collect_spec", (), LEAF_COLUMNS,
           "every evaluated architecture of every leaf"),
    Output("pretrained", "seed{seed}/pretrained.pt", "weights", "pretrain_oneshot", "pretrain_spec", ("seed",), (),
           "with study.protocol transfer: the seed's pretrained one-shot supernet, "
           "where every leaf and both one-shot baselines start"),
    Output("study_set", "study/archs.json", "json", "sample_study_set", "study_set_spec", (), ("archs", "excluded"),
           "the ranking study's architectures"),
    Output("standalone", "study/standalone_gt{gt}_chunk{chunk}.parquet", "parquet", "train_standalone",
           "standalone_spec", ("gt", "chunk"), STANDALONE_COLUMNS,
           "ground truth: some study architectures trained from scratch with one ground-truth seed"),
    Output("oneshot", "seed{seed}/oneshot_{budget}leaves.pt", "weights", "train_oneshot", "oneshot_spec",
           ("seed", "budget"), (),
           "the seed's one-shot baseline, trained as long as {budget} leaves (a tree's, or one)"),
    Output("benchmark", "study/benchmark.parquet", "parquet", "read_benchmark", "benchmark_spec", (),
           BENCHMARK_COLUMNS, "with study.ground_truth.source nats_bench: the study architectures' accuracies in NAS-Bench-201"),
    Output("oneshot_study", "study/oneshot_{budget}leaves_seed{seed}_chunk{chunk}.parquet", "parquet", "evaluate_oneshot",
           "oneshot_eval_spec", ("seed", "budget", "chunk"), STUDY_COLUMNS,
           "some study architectures with a one-shot baseline's weights, on the test part"),
    Output("study", "{metric}/seed{seed}/study_chunk{chunk}.parquet", "parquet", "evaluate_study", "study_eval_spec",
           ("metric", "seed", "chunk"), STUDY_COLUMNS,
           "some study architectures with their leaf's weights in one tree, on the test part"),
    Output("zero_cost", "study/zero_cost/{proxy}_chunk{chunk}.parquet", "parquet", "score_study", "zero_cost_spec",
           ("proxy", "chunk"), ZERO_COST_COLUMNS,
           "some study architectures scored by a metric at initialisation: a training-free ranking"),
    Output("ranking", "ranking.parquet", "parquet", "rank_study", "ranking_spec", (), RANKING_COLUMNS,
           "the ranking measures of every tree, one-shot baseline and training-free ranking, and the ceiling"),
    Output("study_summary", "study_summary.parquet", "parquet", "rank_study", "ranking_spec", (), SUMMARY_COLUMNS,
           "per metric and baseline: mean tau with its interval, and paired comparisons with random splits and one-shot"),
]
#: Every output by kind, in the order the DAG makes them.
OUTPUTS: dict[str, Output] = {o.kind: o for o in _ENTRIES}

@dataclass(frozen=True)
class Figure:
    """One figure of a run: ``figures/<name>.png`` and ``.pdf``, and the values it plots as ``.csv`` when
    ``data``; drawn by ``rule`` from the outputs ``made_from`` by the function ``draw``
    of :mod:`fewshot_core.report`, shown in the report under ``category`` with ``caption``."""

    name: str
    rule: str
    made_from: tuple[str, ...]
    draw: str
    category: str
    caption: str  # a file of workflow/report/
    data: bool = False

    def files(self, run_dir: str | Path) -> list[str]:
        """The paths of its files, PNG first."""
        return [f"{run_dir}/{FIGURE.format(name=self.name, ext=ext)}" for ext in ("png", "pdf", "csv")[: 2 + self.data]]


FIGURE = "figures/{name}.{ext}"
RUN_TABLES = ("splits_table", "split_distance")  # what the split figures are drawn from
STUDY_TABLES = ("ranking", "study_summary")  # what the ranking figure is drawn from
#: Every figure of a run, by name.
FIGURES: dict[str, Figure] = {f.name: f for f in [
    Figure("fig1_split_distance", "draw_figures", RUN_TABLES, "figure_split_distance", "Split distance",
           "fig1.rst", data=True),
    Figure("fig2_split_distance_by_level", "draw_figures", RUN_TABLES, "figure_split_distance_by_level",
           "Split distance", "fig2.rst", data=True),
    Figure("between_metrics", "draw_figures", RUN_TABLES, "figure_between_metrics", "Beyond the paper",
           "between.rst"),
    Figure("trees", "draw_figures", RUN_TABLES, "figure_trees", "Beyond the paper", "trees.rst"),
    Figure("ranking", "draw_ranking", STUDY_TABLES, "figure_ranking", "Ranking study", "ranking.rst", data=True),
]}


def figures_of(rule: str) -> list[Figure]:
    """The figures one rule draws, in the catalogue's order."""
    return [f for f in FIGURES.values() if f.rule == rule]
LOG = "logs/{rule}/{name}.log"
BENCHMARK = "benchmarks/{rule}/{name}.tsv"
#: Training state of a job in progress, under ``results/<run>/checkpoints/`` (deleted when its job ends).
CHECKPOINTS = {
    "root": "seed{seed}/root.ckpt",
    "warmup": "{metric}/seed{seed}/warmup_{node}.ckpt",
    "leaf": "{metric}/seed{seed}/leaf_{node}.ckpt",
    "standalone": "study/standalone_gt{gt}_{arch}.ckpt",
    "oneshot": "seed{seed}/oneshot_{budget}.ckpt",
    "pretrain": "seed{seed}/pretrained.ckpt",
}


def checkpoint(folder: str | Path, name: str, **fields) -> Path:
    """Where a training job keeps the checkpoint ``name`` (a key of :data:`CHECKPOINTS`) under ``folder``."""
    return Path(folder) / CHECKPOINTS[name].format(**fields)


# ----------------------------------------------------------------------------- code and keys


def module_digest(module: str) -> str:
    """The code digest of a package module (:func:`fewshot_core.digests.of_code`), once per process."""
    return digests.of_code_cached(dependencies.module_file(module))


def digest_imported_modules() -> None:
    """Cache the digest of every module an output names that this process has imported. The warm server
    calls it after its imports, so a job forked from it records the code it runs (read when that code was
    loaded) without parsing the package again (0.07-0.09 s off a scoring job, BENCHMARKS.md)."""
    for rule in sorted({o.rule for o in OUTPUTS.values()}):
        if f"fewshot_core.{dependencies.STAGES}" in sys.modules:
            dependencies.stage_digest(rule)
        for module in dependencies.stage_code(rule):
            if f"fewshot_core.{module}" in sys.modules:
                module_digest(module)


def code_version(output: Output) -> dict[str, str]:
    """``{module: digest}`` of the code an output's content depends on: its stage function
    (``stages.<rule>``, with the helpers it calls) and the science modules it reaches."""
    return dict(_code_version(output.kind))


@cache
def _code_version(kind: str) -> tuple[tuple[str, str], ...]:
    """Once per kind and process: the start-up check asks for it for each of the paper's 3,941 outputs."""
    rule = OUTPUTS[kind].rule
    return ((f"{dependencies.STAGES}.{rule}", dependencies.stage_digest(rule)),
            *((m, module_digest(m)) for m in dependencies.stage_code(rule)))


def key(output: Output, spec_json: str) -> str:
    """The key of an output made by the spec whose canonical JSON is ``spec_json``: the digest of its kind,
    format and columns, the spec (which names its inputs' keys, so a key changes with anything upstream)
    and the code its stage reaches. Equal keys, equal content; the one thing every check compares."""
    code = sorted(f"{m}={d}" for m, d in code_version(output).items())
    return digests.short([output.kind, output.format, ",".join(output.columns), spec_json, *code])
