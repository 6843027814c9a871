"""The ranking study: does a metric's split help few-shot NAS? (docs/design.md §8)

A seeded sample of NAS-Bench-201 architectures (the study set) is trained from scratch, one
standalone network each (the ground truth), and evaluated again with the weights of the leaf of
each tree that holds it (the leaf-inherited accuracy) and with a one-shot supernet trained for the
same number of steps as all the leaves of a tree. Per tree, the two rankings are compared: Kendall's
tau-b and Spearman's rho, the top-1 architecture's standalone accuracy and its regret, and the
overlap of the top-k sets. Torch-free.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fewshot_core.nb201 import NUM_EDGES, NUM_OPS, OPS, format_arch, reaches_output
from fewshot_core.outputs import RANKING_COLUMNS

#: The name the one-shot baseline's rows carry in the metric column.
ONESHOT = "one-shot"


def study_set(n: int, seed: int) -> tuple[list[str], int]:
    """``n`` architectures drawn uniformly without replacement from those whose cell connects its input to
    its output (the others give chance accuracy everywhere), and how many of all 5^6 are cut off."""
    all_ops = np.array(np.meshgrid(*[range(NUM_OPS)] * NUM_EDGES, indexing="ij")).reshape(NUM_EDGES, -1).T
    connected = [row for row in all_ops if reaches_output([OPS[o] != "none" for o in row])]
    if n > len(connected):
        raise ValueError(f"study.archs: {n} exceeds the {len(connected)} connected architectures")
    picks = np.random.default_rng([seed, 201]).choice(len(connected), size=n, replace=False)
    return [format_arch([OPS[o] for o in connected[i]]) for i in sorted(picks)], len(all_ops) - len(connected)


def kendall_tau(x, y) -> float:
    """Kendall's tau-b (ties allowed), as scipy computes it; 0 when a side is constant (tau undefined)."""
    from scipy import stats  # imported here: scipy.stats costs most jobs' start-up 0.8 s they do not need

    tau = stats.kendalltau(x, y).statistic
    return 0.0 if np.isnan(tau) else float(tau)


def spearman_rho(x, y) -> float:
    """Spearman's rho, as scipy computes it; 0 when a side is constant."""
    from scipy import stats

    rho = stats.spearmanr(x, y).statistic
    return 0.0 if np.isnan(rho) else float(rho)


def kendall_tau_resampled(x: np.ndarray, y: np.ndarray, draws: int, seed: int, chunk: int = 64) -> np.ndarray:
    """Kendall's tau-b of ``draws`` resamples (with replacement) of the pairs ``(x, y)``, drawn from ``seed``.

    Vectorised over the resamples (scipy's per-call overhead made 1,000 draws per tree take most of the
    ranking job): tau-b = sum of sign(dx) sign(dy) over pairs / sqrt(pairs untied in x * pairs untied in
    y), scipy's formula; 0 where a side is constant.
    """
    n = len(x)
    idx = np.random.default_rng(seed).integers(0, n, (draws, n))
    upper = np.triu_indices(n, 1)
    taus = []
    for start in range(0, draws, chunk):
        xs, ys = x[idx[start:start + chunk]], y[idx[start:start + chunk]]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])[:, upper[0], upper[1]]
        dy = np.sign(ys[:, :, None] - ys[:, None, :])[:, upper[0], upper[1]]
        untied = np.count_nonzero(dx, axis=1) * np.count_nonzero(dy, axis=1)
        taus.append(np.where(untied > 0, (dx * dy).sum(axis=1) / np.sqrt(np.maximum(untied, 1)), 0.0))
    return np.concatenate(taus)


def bootstrap_interval(values: np.ndarray, statistic, draws: int, seed: int) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of ``statistic`` over ``draws`` resamples (with replacement) of the
    rows of ``values``, drawn from ``seed``."""
    values = np.asarray(values)
    if len(values) < 2:
        v = float(statistic(values)) if len(values) else float("nan")
        return v, v
    rng = np.random.default_rng(seed)
    samples = [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(draws)]
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def rank_tree(inherited: pd.Series, standalone: pd.Series, k: int, draws: int, seed: int) -> dict:
    """One tree's ranking measures; both series are indexed by architecture (the study set)."""
    archs = standalone.index
    x, y = inherited.reindex(archs).to_numpy(float), standalone.to_numpy(float)
    if np.isnan(x).any():
        raise ValueError(f"{int(np.isnan(x).sum())} study architectures have no leaf-inherited accuracy")
    top1 = archs[int(np.argmax(x))]  # ties: the first in the study set's order
    k = min(k, len(archs))
    top_inherited = set(archs[np.argsort(-x, kind="stable")[:k]])
    top_standalone = set(archs[np.argsort(-y, kind="stable")[:k]])
    lo, hi = np.percentile(kendall_tau_resampled(x, y, draws, seed), [2.5, 97.5]) if len(x) > 1 else (0.0, 0.0)
    return {"archs": len(archs), "tau": kendall_tau(x, y), "tau_lo": float(lo), "tau_hi": float(hi), "rho": spearman_rho(x, y),
            "top1_arch": top1, "top1_standalone": float(standalone[top1]),
            "regret": float(y.max() - standalone[top1]), "topk_overlap": len(top_inherited & top_standalone) / k,
            "k": k}


def ranking_table(standalone: pd.DataFrame, inherited: pd.DataFrame, k: int, draws: int) -> pd.DataFrame:
    """Per tree (metric, seed; the one-shot baseline as metric ``one-shot``): :func:`rank_tree`.

    ``standalone``: columns arch, val_accuracy. ``inherited``: columns metric, seed, arch, val_accuracy.
    """
    truth = standalone.set_index("arch").val_accuracy
    rows = []
    for (metric, seed), part in inherited.groupby(["metric", "seed"], sort=True):
        rows.append({"metric": metric, "seed": int(seed),
                     **rank_tree(part.set_index("arch").val_accuracy, truth, k, draws, int(seed))})
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))


def metric_intervals(ranking: pd.DataFrame, draws: int, seed: int = 0) -> pd.DataFrame:
    """Per metric: the mean tau over its trees (seeds) and a 95% bootstrap interval of that mean."""
    rows = []
    for metric, part in ranking.groupby("metric", sort=False):
        lo, hi = bootstrap_interval(part.tau.to_numpy(), np.mean, draws, seed)
        rows.append({"metric": metric, "trees": len(part), "tau_mean": part.tau.mean(), "tau_mean_lo": lo,
                     "tau_mean_hi": hi, "rho_mean": part.rho.mean(), "regret_mean": part.regret.mean(),
                     "topk_overlap_mean": part.topk_overlap.mean()})
    return pd.DataFrame(rows)
