"""The run's plan: its settings, built once from the checked configuration, and what follows from them: the
outputs the run makes, and the spec of the job that makes each (:mod:`fewshot_core.specs`), each spec's
canonical JSON and digest computed once. Torch-free: the workflow imports this module while it parses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fewshot_core import digests
from fewshot_core.data_files import data_files
from fewshot_core.outputs import OUTPUTS, key
from fewshot_core.settings import (
    DataSettings,
    EvalSettings,
    MetricSettings,
    StudySettings,
    SupernetSettings,
    TrainSettings,
    TreeMetric,
    canonical_json,
    metric_code,
)
from fewshot_core.specs import (
    BenchmarkSpec,
    ChildrenSpec,
    FiguresSpec,
    HoldoutSpec,
    LeavesSpec,
    OneShotEvalSpec,
    OneShotSpec,
    PretrainSpec,
    RankingSpec,
    RootSpec,
    ScoreSpec,
    SplitSpec,
    StandaloneSpec,
    StudyEvalSpec,
    StudySetSpec,
    TreesSpec,
    ZeroCostSpec,
)
from fewshot_core.tree import leaf_names

# ----------------------------------------------------------------------------- the run

#: The images' digest the workflow's main process read, for the processes of its cluster jobs.
IMAGES_VARIABLE = "FEWSHOT_IMAGES"


def _memo(method):
    """Cache a spec builder per run settings object: the workflow asks for each spec many times."""

    def cached(self, *args):
        key = (method.__name__, args)
        if key not in self._cache:
            self._cache[key] = method(self, *args)
        return self._cache[key]

    cached.__name__, cached.__doc__ = method.__name__, method.__doc__
    return cached


@dataclass(frozen=True)
class RunSettings:
    """A whole run, built once from the configuration; its methods give each job's spec.

    ``device`` and ``download`` decide how a run goes, not what it computes: they are in no spec, so
    changing them reruns nothing (docs/design.md §7).
    """

    run: str
    seeds: tuple[int, ...]
    data: DataSettings
    supernet: SupernetSettings
    device: str
    download: bool
    metrics: dict[str, TreeMetric]  # every tree's metric or control, by the tree's name
    warmup: TrainSettings
    leaf_training: TrainSettings
    evaluation: EvalSettings
    leaves_per_job: int
    study: StudySettings
    proxies: dict[str, MetricSettings]
    directions: dict[str, int]  # per proxy: +1 when higher values mark a better architecture, -1 when lower
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def canonical(self, spec) -> str:
        """:func:`canonical_json` of a spec this object built, computed once: the workflow asks for the
        same specs many thousand times while it builds the paper's DAG."""
        key = ("json", id(spec))
        if key not in self._cache:
            self._cache[key] = (spec, canonical_json(spec))  # the spec is kept: its id stays its own
        return self._cache[key][1]

    def key(self, kind: str, *identity) -> str:
        """The key of the output ``kind`` identified by ``identity`` (its values in the catalogue's order), as
        :func:`fewshot_core.outputs.key` computes it, once: what its record must name, and what the specs of
        the jobs that read it name for it."""
        cache_key = ("key", kind, identity)
        if cache_key not in self._cache:
            out = OUTPUTS[kind]
            spec = getattr(self, out.spec)(*identity)
            self._cache[cache_key] = key(out, self.canonical(spec))
        return self._cache[cache_key]

    def images(self) -> str:
        """The digest of the dataset's files as they are now (those its loader reads): the holdouts' specs name
        it, so replaced images rerun everything made from them. Read once per run: the workflow's main process
        hands it to the processes of its cluster jobs (:meth:`use_images`), which parse the workflow again."""
        if "images" not in self._cache:
            self._cache["images"] = digests.of_files(data_files(self.data.name, self.data.root))
        return self._cache["images"]

    def use_images(self, digest: str) -> None:
        """Take the images' digest the workflow's main process read (:meth:`images`)."""
        self._cache["images"] = digest

    def levels(self, metric: str) -> int:
        """The levels of ``metric``'s trees."""
        return len(self.metrics[metric].tree.factors)

    @property
    def warms_up(self) -> bool:
        return self.warmup.epochs > 0

    def trains_children(self, level: int) -> bool:
        """Whether the nodes of ``level`` get their own weights (warm-up from their parent's) or are
        scored with the root's: the inheritance rule, written once."""
        return self.warms_up and level > 0

    def leaf_chunks(self, metric: str) -> list[tuple[str, ...]]:
        """The leaves of ``metric``'s trees, ``leaves_per_job`` to a job."""
        leaves = leaf_names(self.metrics[metric].tree.factors)
        k = self.leaves_per_job
        return [tuple(leaves[i : i + k]) for i in range(0, len(leaves), k)]

    def chunks(self, metric: str) -> int:
        return len(self.leaf_chunks(metric))

    @property
    def has_study(self) -> bool:
        return self.study.archs > 0

    def study_chunks(self) -> int:
        """The study set in jobs of ``study.archs_per_job`` architectures."""
        return -(-self.study.archs // self.study.archs_per_job)

    def leaf_count(self, metric: str) -> int:
        return sum(len(c) for c in self.leaf_chunks(metric))

    def budgets(self) -> tuple[int, ...]:
        """The one-shot baselines' budgets, as the number of leaves whose training steps each takes: every
        tree shape's leaf count (so each tree has a baseline of its own steps) and one leaf's."""
        return tuple(sorted({1, *(self.leaf_count(m) for m in self.metrics)}, reverse=True))

    def holdout_seeds(self) -> tuple[int, ...]:
        """The seeds whose holdout some job reads: the run's, and the study's."""
        return tuple(sorted({*self.seeds, *((self.study.seed,) if self.has_study else ())}))

    # ------------------------------------------------------------------------- each job's spec

    @_memo
    def holdout_spec(self, seed: int) -> HoldoutSpec:
        return HoldoutSpec(self.run, self.data, self.images(), seed)

    @_memo
    def root_spec(self, seed: int) -> RootSpec:
        return RootSpec(self.run, self.data, self.supernet, self.warmup if self.warms_up else None, seed,
                        {"holdout": self.key("holdout", seed)})

    def level_weights(self, metric: str, seed: int, level: int) -> tuple[str, dict]:
        """The output a level's nodes are scored with (and its children start from): the level's own
        weights after warm-up, else the root's; as (kind, identity). Decided here only: the workflow's
        input functions and the specs' input digests both ask."""
        if self.trains_children(level):
            return "nodes", {"metric": metric, "seed": seed, "level": level}
        return "root", {"seed": seed}

    def weights_key(self, metric: str, seed: int, level: int) -> str:
        """The digest of the spec of :meth:`level_weights`' output."""
        kind, identity = self.level_weights(metric, seed, level)
        return self.key(kind, *identity.values())

    def _splits_above(self, metric: str, seed: int, level: int) -> list[str]:
        return [self.key("splits", metric, seed, lv) for lv in range(level)]

    @_memo
    def score_spec(self, metric: str, seed: int, level: int) -> ScoreSpec:
        scorer = self.metrics[metric].levels[level]
        return ScoreSpec(self.run, self.data, self.supernet, metric, scorer, scorer.code_hash(), self.metrics[metric].tree,
                         self.trains_children(level), seed, level,
                         {"holdout": self.key("holdout", seed), "weights": self.weights_key(metric, seed, level),
                          "previous": self._splits_above(metric, seed, level)})

    @_memo
    def split_spec(self, metric: str, seed: int, level: int) -> SplitSpec:
        tree = self.metrics[metric]
        return SplitSpec(self.run, metric, tree.levels[level].kind, tree.tree, tree.balanced, seed, level,
                         {"scores": self.key("scores", metric, seed, level),
                          "previous": self._splits_above(metric, seed, level)})

    @_memo
    def children_spec(self, metric: str, seed: int, level: int) -> ChildrenSpec:
        return ChildrenSpec(self.run, self.data, self.supernet, self.warmup, self.metrics[metric].tree.factors, metric,
                            seed, level,
                            {"holdout": self.key("holdout", seed),
                             "parent_weights": self.weights_key(metric, seed, level - 1),
                             "splits": self._splits_above(metric, seed, level)})

    @_memo
    def leaves_spec(self, metric: str, seed: int, chunk: int) -> LeavesSpec:
        inputs = {"holdout": self.key("holdout", seed),
                  "splits": self._splits_above(metric, seed, self.levels(metric))}
        if self.study.transfers:
            inputs["pretrained"] = self.key("pretrained", seed)
        return LeavesSpec(self.run, self.data, self.supernet, self.leaf_training, self.evaluation,
                          self.metrics[metric].tree.factors, metric, seed, chunk, self.leaf_chunks(metric)[chunk],
                          self.leaf_start, inputs)

    @property
    def leaf_start(self) -> str:
        """Where every leaf (and one-shot baseline) starts: the pretrained one-shot supernet, or an init."""
        return "pretrained" if self.study.transfers else "init"

    def trees(self) -> list[tuple[str, int]]:
        """Every tree of the run, (metric, seed), in the order of the run's tables."""
        return [(m, s) for m in self.metrics for s in self.seeds]

    def _trees_spec(self, inputs: dict) -> TreesSpec:
        return TreesSpec(self.run, tuple(self.metrics), self.seeds, {m: self.levels(m) for m in self.metrics},
                         {m: self.chunks(m) for m in self.metrics},
                         tuple(m for m, t in self.metrics.items() if t.control), inputs)

    @_memo
    def distances_spec(self) -> TreesSpec:
        return self._trees_spec({"splits": [self.key("splits", m, s, lv) for m, s in self.trees()
                                            for lv in range(self.levels(m))]})

    @_memo
    def collect_spec(self) -> TreesSpec:
        return self._trees_spec({"tables": [self.key("leaves", m, s, c) for m, s in self.trees()
                                            for c in range(self.chunks(m))]})

    def figures_spec(self) -> FiguresSpec:
        return FiguresSpec(self.run, {"splits": self.key("splits_table"), "distance": self.key("split_distance")})

    @_memo
    def study_set_spec(self) -> StudySetSpec:
        return StudySetSpec(self.run, self.study.archs, self.study.seed)

    @_memo
    def standalone_spec(self, gt: int, chunk: int) -> StandaloneSpec:
        train = dataclasses.replace(self.leaf_training, epochs=self.study.standalone)
        return StandaloneSpec(self.run, self.data, self.supernet, train, self.evaluation.batch_size, self.study.seed,
                              gt, chunk, self.study.archs_per_job,
                              {"study_set": self.key("study_set"),
                               "holdout": self.key("holdout", self.study.seed)})

    @_memo
    def pretrain_spec(self, seed: int) -> PretrainSpec:
        train = dataclasses.replace(self.leaf_training, epochs=self.study.pretrain)
        return PretrainSpec(self.run, self.data, self.supernet, train, seed, {"holdout": self.key("holdout", seed)})

    def budget_epochs(self, budget: int) -> int:
        """The one-shot baseline's epochs: as many steps as ``budget`` leaves (all the leaves of a tree, or one)."""
        return self.leaf_training.epochs * budget

    @_memo
    def oneshot_spec(self, seed: int, budget: int) -> OneShotSpec:
        inputs = {"holdout": self.key("holdout", seed)}
        if self.study.transfers:
            inputs["pretrained"] = self.key("pretrained", seed)
        train = dataclasses.replace(self.leaf_training, epochs=self.budget_epochs(budget))
        return OneShotSpec(self.run, self.data, self.supernet, train, budget, self.leaf_start, seed, inputs)

    @_memo
    def study_eval_spec(self, metric: str, seed: int, chunk: int) -> StudyEvalSpec:
        return StudyEvalSpec(self.run, self.data, self.evaluation, self.metrics[metric].tree.factors, metric, seed, chunk,
                             self.study.archs_per_job,
                             {"study_set": self.key("study_set"), "holdout": self.key("holdout", seed),
                              "splits": self._splits_above(metric, seed, self.levels(metric)),
                              "leaf_weights": [self.key("leaf_weights", metric, seed, c)
                                               for c in range(self.chunks(metric))]})

    @_memo
    def oneshot_eval_spec(self, seed: int, budget: int, chunk: int) -> OneShotEvalSpec:
        return OneShotEvalSpec(self.run, self.data, self.evaluation, seed, budget, chunk, self.study.archs_per_job,
                               {"study_set": self.key("study_set"), "holdout": self.key("holdout", seed),
                                "oneshot": self.key("oneshot", seed, budget)})

    @_memo
    def benchmark_spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.run, self.study.ground_truth, {"study_set": self.key("study_set")})

    @_memo
    def zero_cost_spec(self, proxy: str, chunk: int) -> ZeroCostSpec:
        m = self.proxies[proxy]
        return ZeroCostSpec(self.run, self.data, self.supernet, proxy, m, metric_code(m.name, m.function), self.study.seed, chunk,
                            self.study.archs_per_job, {"study_set": self.key("study_set"),
                                                       "holdout": self.key("holdout", self.study.seed)})

    @_memo
    def ranking_spec(self) -> RankingSpec:
        chunks = range(self.study_chunks())
        gt = self.study.ground_truth
        protocol = {"protocol": self.study.protocol, "pretrain_epochs": self.study.pretrain if self.study.transfers
                    else 0, "leaf_epochs": self.leaf_training.epochs,
                    "leaves": {m: self.leaf_count(m) for m in self.metrics},
                    "oneshot_epochs": {str(b): self.budget_epochs(b) for b in self.budgets()}, "ground_truth": gt.source,
                    "standalone_epochs": self.study.standalone, "gt_seeds": self.study.gt_seeds,
                    "rank_by": self.study.rank_by,
                    "benchmark": {"dataset": gt.dataset, "hp": gt.hp, "accuracy": gt.accuracy} if gt.benchmark
                    else None, "evaluated_on": "test",
                    "data": {"name": self.data.name, "input_size": self.data.input_size,
                             "train_images": self.data.train_images, "val_fraction": self.data.val_fraction},
                    "network": {"C": self.supernet.C, "N": self.supernet.N}}
        truth = ([self.key("benchmark")] if gt.benchmark else
                 [self.key("standalone", g, k) for g in range(self.study.gt_seeds) for k in chunks])
        trees = {m: {"leaves": self.leaf_count(m), "factors": list(t.tree.factors), "control": t.control}
                 for m, t in self.metrics.items()}
        return RankingSpec(self.run, tuple(self.metrics), self.seeds, gt.source, self.study.gt_seeds,
                           self.study_chunks(), tuple(self.proxies), self.directions, self.budgets(), self.study.rank_by,
                           self.study.top_k, self.study.bootstrap, trees, protocol,
                           {"truth": truth,
                            "studies": [self.key("study", m, s, k) for m, s in self.trees() for k in chunks],
                            "oneshots": [self.key("oneshot_study", s, b, k) for s in self.seeds
                                         for b in self.budgets() for k in chunks],
                            "zero_cost": [self.key("zero_cost", p, k) for p in self.proxies for k in chunks]})

    def ranking_figure_spec(self) -> FiguresSpec:
        return FiguresSpec(self.run, {"ranking": self.key("ranking"), "summary": self.key("study_summary")})

    def figure_spec(self, rule: str) -> FiguresSpec:
        """The spec of the rule that draws a figure (``draw_figures`` or ``draw_ranking``)."""
        return self.figures_spec() if rule == "draw_figures" else self.ranking_figure_spec()

    # ------------------------------------------------------------------------- every output of the run

    def outputs(self) -> list[tuple[str, dict]]:
        """Every output file the run makes: (kind, identity), in the order the DAG makes them."""
        out = [("holdout", {"seed": s}) for s in self.holdout_seeds()]
        out += [("root", {"seed": s}) for s in self.seeds]
        for m, s in self.trees():
            for lv in range(self.levels(m)):
                out += [("scores", dict(metric=m, seed=s, level=lv)), ("splits", dict(metric=m, seed=s, level=lv))]
                if self.trains_children(lv):
                    out.append(("nodes", dict(metric=m, seed=s, level=lv)))
            for c in range(self.chunks(m)):
                out += [("leaves", dict(metric=m, seed=s, chunk=c)), ("leaf_weights", dict(metric=m, seed=s, chunk=c))]
        out += [("splits_table", {}), ("split_distance", {}), ("leaves_table", {})]
        if self.study.transfers:
            out += [("pretrained", {"seed": s}) for s in self.seeds]
        if self.has_study:
            chunks = range(self.study_chunks())
            out.append(("study_set", {}))
            if self.study.ground_truth.benchmark:
                out.append(("benchmark", {}))
            else:
                out += [("standalone", {"gt": g, "chunk": k}) for g in range(self.study.gt_seeds) for k in chunks]
            out += [("oneshot", {"seed": s, "budget": b}) for s in self.seeds for b in self.budgets()]
            out += [("oneshot_study", {"seed": s, "budget": b, "chunk": k}) for s in self.seeds for b in self.budgets()
                    for k in chunks]
            out += [("study", {"metric": m, "seed": s, "chunk": k}) for m, s in self.trees() for k in chunks]
            out += [("zero_cost", {"proxy": p, "chunk": k}) for p in self.proxies for k in chunks]
            out += [("ranking", {}), ("study_summary", {})]
        return out

    def spec_for(self, kind: str, identity: dict):
        """The spec that makes the output ``kind`` identified by ``identity``."""
        return getattr(self, OUTPUTS[kind].spec)(*(identity[k] for k in OUTPUTS[kind].identity))
