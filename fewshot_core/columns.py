"""The columns of every table the science makes, in their order: what its writers and readers and the
output catalogue (:mod:`fewshot_core.outputs`) take, and part of each table's key. Plain data.
"""

SCORE_COLUMNS = ("metric", "seed", "node", "depth", "edge", "op", "value", "parent_value", "similarity", "seconds")
LEAF_COLUMNS = ("metric", "seed", "leaf", "arch", "val_accuracy", "val_loss")
SPLIT_COLUMNS = ("node", "depth", "edge", "groups", "cut", "ops", "similarity", "metric", "seed", "edge_name")
PAIR_COLUMNS = ("kind", "metric_a", "metric_b", "seed_a", "seed_b", "node_a", "node_b", "depth_a", "depth_b", "edge_a",
                "edge_b", "same_depth", "distance")
STUDY_COLUMNS = ("metric", "seed", "arch", "leaf", "test_accuracy", "test_loss")
STANDALONE_COLUMNS = ("arch", "gt", "test_accuracy", "test_loss", "epochs")
ZERO_COST_COLUMNS = ("proxy", "arch", "score")
BENCHMARK_COLUMNS = ("arch", "index", "trial", "seed", "accuracy", "loss")
RANKING_COLUMNS = ("kind", "name", "seed", "archs", "tau", "tau_lo", "tau_hi", "tau_accuracy", "tau_loss", "rho",
                   "tau_within", "tau_across", "pairs_within", "tau_same_params", "tau_same_params_lo",
                   "tau_same_params_hi", "pairs_same_params", "top1_arch", "top1_truth", "regret", "topk_overlap", "k")
SUMMARY_COLUMNS = ("kind", "name", "rankings", "tau", "tau_lo", "tau_hi", "tau_accuracy", "tau_loss", "rho", "tau_within",
                   "tau_across", "tau_same_params", "tau_same_params_lo", "tau_same_params_hi", "regret", "topk_overlap",
                   "vs_random", "vs_random_lo", "vs_random_hi", "vs_random_wins", "vs_random_detectable",
                   "vs_oneshot", "vs_oneshot_lo", "vs_oneshot_hi", "vs_oneshot_wins", "vs_oneshot_detectable",
                   "vs_structure", "vs_structure_lo", "vs_structure_hi", "vs_structure_wins", "vs_structure_detectable")
