"""The ranking study: does a metric's split help few-shot NAS? (docs/design.md §8)

A seeded sample of NAS-Bench-201 architectures (the study set) is trained from scratch with several
seeds (the ground truth: their mean test accuracy), and evaluated on the same test images with the
weights of the leaf of each tree that holds it (the leaf-inherited accuracy), with two one-shot
baselines, and ranked directly by each metric's value at initialisation (training-free). Every
ranking is compared with the ground truth: Kendall's tau-b (scipy's; on accuracy and on loss), its
part over pairs of architectures in one leaf and in different leaves, Spearman's rho, the top-1
architecture's regret and the top-k overlap. The ground truth's seeds compared with each other give
the ceiling no ranking can be told apart beyond. What a ranking knows beyond the parameter count is
its Kendall tau over the pairs of architectures whose parameter counts are equal (pooled over those
groups: the pairs the parameter count cannot order; docs/design.md §8). Per metric, and per control
(a split known from the anchors, or by structure, grown beside the metrics' trees), the mean over trees
(seeds) carries a bootstrap interval over architectures and seeds together, and its paired difference
with random splits and with the one-shot baseline of its own tree's steps is computed on the same
resamples, with the smallest difference the study could have told from zero. Torch-free.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from fewshot_core.columns import RANKING_COLUMNS, SUMMARY_COLUMNS
from fewshot_core.labels import CEILING, ONESHOT, RANDOM, oneshot_name

#: The training-free ranking whose ties group architectures of equal parameter count.
PARAMS = "nparams"


#: Up to this many architectures, resampled taus are computed for all pairs at once; beyond it, one by one.
VECTORISED_UP_TO = 300


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


def kendall_tau_resampled(x: np.ndarray, y: np.ndarray, idx: np.ndarray, groups: np.ndarray | None = None,
                          chunk: int = 64) -> np.ndarray:
    """Kendall's tau-b of ``(x, y)`` on each resample ``idx[r]`` (a row of indices, with replacement); with
    ``groups``, over the pairs in the same group only (:func:`tau_within_groups`).

    Up to :data:`VECTORISED_UP_TO` architectures, vectorised over the resamples (scipy's per-call overhead
    made 1,000 draws per tree most of the ranking job): tau-b = sum of sign(dx) sign(dy) over pairs /
    sqrt(pairs untied in x * pairs untied in y), scipy's formula; 0 where a side is constant (NaN where
    no pair is kept). Beyond it, scipy's O(n log n) tau on each resample.
    """
    n = idx.shape[1]
    if n > VECTORISED_UP_TO:
        if groups is None:
            return np.array([kendall_tau(x[i], y[i]) for i in idx])
        return np.array([tau_within_groups(x[i], y[i], groups[i]) for i in idx])
    upper = np.triu_indices(n, 1)
    taus = []
    for start in range(0, len(idx), chunk):
        rows = idx[start:start + chunk]
        xs, ys = x[rows], y[rows]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])[:, upper[0], upper[1]]
        dy = np.sign(ys[:, :, None] - ys[:, None, :])[:, upper[0], upper[1]]
        if groups is not None:
            gs = groups[rows]
            same = (gs[:, :, None] == gs[:, None, :])[:, upper[0], upper[1]]
            dx, dy = dx * same, dy * same
            kept = same.any(axis=1)
        else:
            kept = np.ones(len(rows), dtype=bool)
        untied = np.count_nonzero(dx, axis=1) * np.count_nonzero(dy, axis=1)
        tau = np.where(untied > 0, (dx * dy).sum(axis=1) / np.sqrt(np.maximum(untied, 1)), 0.0)
        taus.append(np.where(kept, tau, np.nan))
    return np.concatenate(taus)


def tau_within_groups(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Kendall's tau-b over the pairs of items in the same group, pooled: the concordant minus discordant
    pairs of every group over the square root of the products of their untied pairs (the same value as
    ``pair_tau(x, y, groups, True)``), in O(n log n) per group; NaN when no group has two items."""
    num, untied_x, untied_y, kept = 0.0, 0, 0, False
    for g in np.unique(groups):
        at = groups == g
        m = int(at.sum())
        if m < 2:
            continue
        kept = True
        ux, uy = _untied_pairs(x[at]), _untied_pairs(y[at])
        if ux and uy:
            num += kendall_tau(x[at], y[at]) * np.sqrt(float(ux) * uy)
        untied_x, untied_y = untied_x + ux, untied_y + uy
    if not kept:
        return float("nan")
    return num / np.sqrt(float(untied_x) * untied_y) if untied_x and untied_y else 0.0


def _untied_pairs(v: np.ndarray) -> int:
    """The pairs of ``v`` whose two values differ."""
    counts = np.unique(v, return_counts=True)[1]
    return int(len(v) * (len(v) - 1) // 2 - (counts * (counts - 1) // 2).sum())


def pair_tau(x: np.ndarray, y: np.ndarray, groups: np.ndarray, same: bool) -> tuple[float, int]:
    """Kendall's tau-b over the pairs of architectures in the same group (``same``) or in different groups
    only, and how many such pairs there are; NaN when there are none. With one group, the pairs within
    it are all pairs and tau-b is scipy's."""
    num, untied_x, untied_y, pairs = 0.0, 0, 0, 0
    for start in range(0, len(x), 512):  # rows in blocks: memory stays small for every architecture of NB201
        i = np.arange(start, min(start + 512, len(x)))[:, None]
        j = np.arange(len(x))[None, :]
        keep = (j > i) & ((groups[i] == groups[j]) == same)
        dx, dy = np.sign(x[i] - x[j])[keep], np.sign(y[i] - y[j])[keep]
        num += float((dx * dy).sum())
        untied_x += int(np.count_nonzero(dx))
        untied_y += int(np.count_nonzero(dy))
        pairs += int(keep.sum())
    if pairs == 0:
        return float("nan"), 0
    return (num / np.sqrt(untied_x * untied_y) if untied_x and untied_y else 0.0), pairs


# ----------------------------------------------------------------------------- the study's tables


#: What a ranking can be measured on: the test accuracy (higher: better) or the test loss (lower: better).
MEASURES = ("accuracy", "loss")


def ground_truth(truth: pd.DataFrame) -> pd.DataFrame:
    """Per architecture (in study-set order): the mean accuracy and loss over the ground truth's seeds (the
    benchmark's trials: as many as it has for the architecture), and each seed's accuracy and loss
    (columns ``accuracy_<g>``, ``loss_<g>``; missing where a trial is)."""
    archs = list(dict.fromkeys(truth.arch))
    acc = truth.pivot(index="arch", columns="gt", values="accuracy").reindex(archs)
    loss = truth.pivot(index="arch", columns="gt", values="loss").reindex(archs)
    if acc.isna().all(axis=1).any():
        raise ValueError(f"{int(acc.isna().all(axis=1).sum())} study architectures have no ground truth")
    out = pd.DataFrame({"accuracy": acc.mean(axis=1), "loss": loss.mean(axis=1)}, index=acc.index)
    for g in acc.columns:
        out[f"accuracy_{g}"], out[f"loss_{g}"] = acc[g], loss[g]
    return out


def _oriented(values: pd.Series | np.ndarray, measure: str) -> np.ndarray:
    """Values of ``measure`` as a ranking, higher: better (a loss negated)."""
    values = np.asarray(values, dtype=float)
    return -values if measure == "loss" else values


def _measures(name: str, kind: str, seed, x: dict[str, np.ndarray], by: str, groups: np.ndarray | None,
              gt: pd.DataFrame, k: int, taus: np.ndarray, params: np.ndarray | None, params_taus: np.ndarray) -> dict:
    """One ranking's row: ``x[m]`` ranks the architectures on measure ``m`` (higher: better), ``by`` the
    measure the ground truth is ranked by (tau, its interval, rho, the pairs' taus and the top k are on it;
    the regret is in accuracy), ``groups`` the leaf holding each (None: no leaves), ``params`` their
    parameter counts (None: unknown), ``taus`` and ``params_taus`` the resampled taus."""
    archs = gt.index
    y = _oriented(gt[by], by)
    x_by = x[by]
    top1 = archs[int(np.argmax(x_by))]  # ties: the first in the study set's order
    k = min(k, len(archs))
    top_x, top_y = set(archs[np.argsort(-x_by, kind="stable")[:k]]), set(archs[np.argsort(-y, kind="stable")[:k]])
    within, pairs = pair_tau(x_by, y, groups, True) if groups is not None else (float("nan"), 0)
    across, _ = pair_tau(x_by, y, groups, False) if groups is not None else (float("nan"), 0)
    same, same_pairs = pair_tau(x_by, y, params, True) if params is not None else (float("nan"), 0)
    lo, hi = np.percentile(taus, [2.5, 97.5])
    p_lo, p_hi = _interval(params_taus)
    return {"kind": kind, "name": name, "seed": seed, "archs": len(archs), "tau": kendall_tau(x_by, y),
            "tau_lo": float(lo), "tau_hi": float(hi),
            **{f"tau_{m}": kendall_tau(x[m], _oriented(gt[m], m)) for m in MEASURES},
            "rho": spearman_rho(x_by, y), "tau_within": within, "tau_across": across, "pairs_within": pairs,
            "tau_same_params": same, "tau_same_params_lo": p_lo, "tau_same_params_hi": p_hi,
            "pairs_same_params": same_pairs, "top1_arch": top1, "top1_truth": float(gt.accuracy[top1]),
            "regret": float(gt.accuracy.max() - gt.accuracy[top1]), "topk_overlap": len(top_x & top_y) / k, "k": k}


def _interval(taus: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of resampled taus, over the resamples where one is defined."""
    finite = taus[np.isfinite(taus)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def study_tables(truth: pd.DataFrame, inherited: pd.DataFrame, scores: pd.DataFrame, directions: dict[str, int],
                 k: int, draws: int, trees: dict[str, dict] | None = None, by: str = "loss",
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranking table (one row per ranking) and the summary (one row per metric, control or baseline).

    ``truth``: arch, gt (its seed or trial), accuracy, loss. ``inherited``: metric (a tree's metric or
    control, or :func:`oneshot_name`), seed, arch, leaf, test_accuracy, test_loss. ``scores``: proxy, arch,
    score; the parameter count's (:data:`PARAMS`) groups the architectures it ties. ``trees``: per tree's
    metric, its ``leaves``, ``factors`` and ``control`` (a tree not named: a metric's, 8 leaves of b = 2).
    ``by``: the measure the ground truth ranks by and every ranking is compared on, its mean ``loss`` (the
    seeds agree better on it, docs/design.md §8) or ``accuracy``; both taus are in the table. Every
    bootstrap uses the same ``draws`` resamples of architectures (and of seeds, for rankings made
    once per seed), drawn from ``seed``: the intervals and the paired differences are comparable.
    """
    trees = trees or {}
    gt = ground_truth(truth)
    archs, y = gt.index, _oriented(gt[by], by)
    n = len(archs)
    if n < 3:
        raise ValueError(f"{n} study architectures cannot be ranked (at least 3)")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (draws, n))
    seeds = sorted(int(s) for s in inherited.seed.unique())
    picks = rng.integers(0, len(seeds), (draws, len(seeds)))  # the same seeds for every metric in a resample
    counted = scores[scores.proxy == PARAMS]
    params = counted.set_index("arch").reindex(archs).score.to_numpy() if len(counted) else None
    if params is not None and np.isnan(params).any():
        raise ValueError(f"the parameter count ({PARAMS}) lacks some study architectures")
    no_params = np.full(draws, np.nan)
    rows, resampled = [], {}  # resampled[(kind, name)][seed] = (taus, taus within equal parameter counts)
    for (name, s), part in inherited.groupby(["metric", "seed"], sort=False):
        part = part.set_index("arch").reindex(archs)
        if part.test_accuracy.isna().any():
            raise ValueError(f"{name}, seed {s}: {int(part.test_accuracy.isna().sum())} study architectures "
                             "have no inherited accuracy")
        kind = ("one-shot" if str(name).startswith(ONESHOT) else
                "control" if trees.get(name, {}).get("control") else "tree")
        x = {m: _oriented(part[f"test_{m}"], m) for m in MEASURES}
        taus = kendall_tau_resampled(x[by], y, idx)
        same = kendall_tau_resampled(x[by], y, idx, params) if params is not None else no_params
        resampled.setdefault((kind, name), {})[int(s)] = (taus, same)
        rows.append(_measures(name, kind, int(s), x, by, part.leaf.to_numpy() if kind != "one-shot" else None, gt,
                              k, taus, params, same))
    for name, part in scores.groupby("proxy", sort=False):
        x = directions[name] * part.set_index("arch").reindex(archs).score.to_numpy()
        if np.isnan(x).any():
            raise ValueError(f"the training-free ranking by {name} lacks some study architectures")
        taus = kendall_tau_resampled(x, y, idx)
        same = kendall_tau_resampled(x, y, idx, params) if params is not None else no_params
        resampled[("zero-cost", name)] = {None: (taus, same)}
        rows.append(_measures(name, "zero-cost", None, dict.fromkeys(MEASURES, x), by, None, gt, k, taus, params, same))
    ceiling = _ceiling(gt, idx, params, by)
    if ceiling is not None:
        rows.append(ceiling[0])
        resampled[("ceiling", CEILING)] = {None: ceiling[1]}
    table = pd.DataFrame(rows, columns=list(RANKING_COLUMNS)).astype({"seed": "Int64"})
    return table, _summary(table, resampled, seeds, picks, trees)


def _ceiling(gt: pd.DataFrame, idx: np.ndarray, params: np.ndarray | None, by: str) -> tuple[dict, tuple] | None:
    """The ground truth's seeds against each other (the mean over pairs of seeds) on the measure ``by`` (and
    on each measure), on the same resamples."""
    gts = [c.removeprefix("accuracy_") for c in gt.columns if c.startswith("accuracy_")]
    if len(gts) < 2:
        return None
    pairs = list(combinations(gts, 2))
    if gt[[f"accuracy_{g}" for g in gts]].isna().any().any():  # the benchmark's trials: the architectures with both
        both = [gt[[f"accuracy_{a}", f"accuracy_{b}"]].notna().all(axis=1).to_numpy() for a, b in pairs]
        pairs = [p for p, keep in zip(pairs, both) if keep.sum() >= 3]
        if not pairs:
            return None
        keeps = {p: keep for p, keep in zip(pairs, both) if keep.sum() >= 3}
        sub = {p: gt[keeps[p]] for p in pairs}
        groups = {p: params[keeps[p]] if params is not None else None for p in pairs}
        n = {p: len(sub[p]) for p in pairs}
        idx = {p: np.random.default_rng(1).integers(0, n[p], (idx.shape[0], n[p])) for p in pairs}
    else:
        sub, idx, groups = {p: gt for p in pairs}, {p: idx for p in pairs}, {p: params for p in pairs}

    def seeds_of(p, what: str) -> tuple[np.ndarray, np.ndarray]:
        return _oriented(sub[p][f"{what}_{p[0]}"], what), _oriented(sub[p][f"{what}_{p[1]}"], what)

    tau = {m: np.mean([kendall_tau(*seeds_of(p, m)) for p in pairs]) for m in MEASURES}
    rho = np.mean([spearman_rho(*seeds_of(p, by)) for p in pairs])
    taus = np.mean([kendall_tau_resampled(*seeds_of(p, by), idx[p]) for p in pairs], axis=0)
    if params is not None:
        same = np.mean([pair_tau(*seeds_of(p, by), groups[p], True)[0] for p in pairs])
        same_pairs = min(pair_tau(*seeds_of(p, by), groups[p], True)[1] for p in pairs)
        same_taus = np.mean([kendall_tau_resampled(*seeds_of(p, by), idx[p], groups[p]) for p in pairs], axis=0)
    else:
        same, same_pairs, same_taus = float("nan"), 0, np.full(len(taus), np.nan)
    lo, hi = np.percentile(taus, [2.5, 97.5])
    p_lo, p_hi = _interval(same_taus)
    nan = float("nan")
    return ({"kind": "ceiling", "name": CEILING, "seed": None, "archs": min(len(s) for s in sub.values()),
             "tau": float(tau[by]), "tau_lo": float(lo), "tau_hi": float(hi),
             **{f"tau_{m}": float(tau[m]) for m in MEASURES}, "rho": float(rho), "tau_within": nan, "tau_across": nan,
             "pairs_within": 0, "tau_same_params": float(same), "tau_same_params_lo": p_lo, "tau_same_params_hi": p_hi,
             "pairs_same_params": same_pairs, "top1_arch": "", "top1_truth": nan, "regret": nan, "topk_overlap": nan,
             "k": 0}, (taus, same_taus))


def _over_seeds(taus: dict, seeds: list[int], picks: np.ndarray) -> np.ndarray:
    """Per resample, the mean tau over the resampled seeds (a ranking made once: its own taus)."""
    if None in taus:
        return taus[None]
    per_seed = np.stack([taus[s] for s in seeds])  # (seeds, draws)
    return per_seed[picks.T, np.arange(picks.shape[0])].mean(axis=0)


#: The control every tree of its shape is also compared with: the cheapest split, by structure alone.
STRUCTURE = "structure"
#: The paired comparisons of the summary: its column, and the (kind, name) of the other side.
COMPARISONS = {"vs_random": ("tree", RANDOM), "vs_oneshot": ("one-shot", None), "vs_structure": ("control", STRUCTURE)}


def _baselines(kind: str, name: str, trees: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """What a tree's ranking is compared with: random splits and the split by structure of the same shape
    (the same branching factors), and the one-shot baseline trained as long as the tree's own leaves."""
    if kind not in ("tree", "control"):
        return {}
    shape = trees.get(name, {})
    out = {"vs_oneshot": ("one-shot", oneshot_name(shape.get("leaves", 8)))}
    for column, (other_kind, other) in COMPARISONS.items():
        if other is not None and name != other and shape.get("factors") == trees.get(other, {}).get("factors"):
            out[column] = (other_kind, other)
    return out


def _summary(table: pd.DataFrame, resampled: dict, seeds: list[int], picks: np.ndarray,
             trees: dict[str, dict]) -> pd.DataFrame:
    """Per metric, control or baseline: the means over its rankings, the interval of the mean tau (and of the
    tau within equal parameter counts), and for each tree its paired difference with random splits and the
    split by structure of its shape and with the one-shot baseline of its steps, with the half-width of that
    difference's interval: the smallest difference the study could tell from zero."""
    means = {key: (_over_seeds({s: t[0] for s, t in taus.items()}, seeds, picks),
                   _over_seeds({s: t[1] for s, t in taus.items()}, seeds, picks)) for key, taus in resampled.items()}
    rows = []
    for (kind, name), (mean, same) in means.items():
        part = table[(table.kind == kind) & (table.name == name)]
        lo, hi = np.percentile(mean, [2.5, 97.5])
        s_lo, s_hi = _interval(same)
        row = {"kind": kind, "name": name, "rankings": len(part), "tau": part.tau.mean(), "tau_lo": float(lo),
               "tau_hi": float(hi), "tau_same_params_lo": s_lo, "tau_same_params_hi": s_hi,
               **{c: part[c].mean() for c in ("tau_accuracy", "tau_loss", "rho", "tau_within", "tau_across", "tau_same_params",
                                              "regret", "topk_overlap")}}
        wanted = _baselines(kind, name, trees)
        for column in COMPARISONS:
            base = wanted.get(column)
            if base is None or base not in means:
                row.update({column: np.nan, f"{column}_lo": np.nan, f"{column}_hi": np.nan, f"{column}_wins": np.nan,
                            f"{column}_detectable": np.nan})
                continue
            other = table[(table.kind == base[0]) & (table.name == base[1])]
            delta = mean - means[base][0]
            d_lo, d_hi = np.percentile(delta, [2.5, 97.5])
            row.update({column: part.tau.mean() - other.tau.mean(), f"{column}_lo": float(d_lo),
                        f"{column}_hi": float(d_hi), f"{column}_wins": float((delta > 0).mean()),
                        f"{column}_detectable": float(d_hi - d_lo) / 2})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
