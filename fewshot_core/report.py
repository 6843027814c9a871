"""The paper's figures and the ones beyond it, drawn with seaborn from a run's tables.

Figure 1: internal (a) and external (b) split distance per metric, spread over seeds.
Figure 2: the same by depth level, internal on top, external below.
Beyond the paper: the mean distance between metrics (heat map) and each metric's tree for one seed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from fewshot_core.catalog import CATALOG, display_name  # noqa: E402
from fewshot_core.distance import per_split, summarise  # noqa: E402

SHORT_OPS = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "conv1x1", "nor_conv_3x3": "conv3x3",
             "avg_pool_3x3": "pool"}
Y_LABEL = "split distance S (operations moved)"


def _ordered(metrics) -> list[str]:
    """The run's metrics in the catalogue's order (any it does not know, after them, by name)."""
    present = set(metrics)
    return [m for m in CATALOG if m in present] + sorted(present - set(CATALOG))


def _order(metrics: pd.Series) -> list[str]:
    return [display_name(m) for m in _ordered(metrics)]


def _save(fig: plt.Figure, stem: Path, data: pd.DataFrame | None = None) -> list[Path]:
    """The figure as PNG and PDF, and the values it plots as CSV beside them (when given)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    if data is not None:
        out.append(stem.with_suffix(".csv"))
        data.to_csv(out[2], index=False)
    fig.savefig(out[0], dpi=150, bbox_inches="tight")
    fig.savefig(out[1], bbox_inches="tight")
    plt.close(fig)
    return out


def _nothing_to_compare(title: str, reason: str, out: Path) -> list[Path]:
    """A figure that says why it is empty, so that a small run still gets every file it asked for."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, f"{title}:\nnothing to compare ({reason})", ha="center", va="center")
    ax.axis("off")
    return _save(fig, out)


def _splits_and_seed_means(ax: plt.Axes, df: pd.DataFrame, order: list[str], hue: str | None = None,
                           hue_order: list[str] | None = None) -> None:
    """A box per metric over its splits' values (pooled over seeds), a dot per split, and each
    seed's mean of its splits as a black diamond."""
    if df.empty:  # external distances need two seeds
        ax.text(0.5, 0.5, "no pairs to compare\n(external distances need two seeds)", ha="center", va="center",
                transform=ax.transAxes)
        return
    palette = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order)))) if hue_order else None
    common = dict(x="metric_name", y="distance", hue=hue, order=order, hue_order=hue_order, ax=ax)
    sns.boxplot(data=df, **common, palette=palette, color="#cfe0f3" if hue is None else None, showfliers=False,
                linewidth=1)
    sns.stripplot(data=df, **common, palette=palette, dodge=hue is not None, color="#1f4e79" if hue is None else None,
                  size=3, alpha=0.6, legend=False)
    seeds = df.groupby(["metric_name", "seed"] + ([hue] if hue else [])).distance.mean().reset_index()
    sns.stripplot(data=seeds, **common, dodge=hue is not None, palette={h: "black" for h in hue_order or []} or None,
                  color="black" if hue is None else None, marker="D", size=4, jitter=False, legend=False)


def _per_split(pairs: pd.DataFrame, by_level: bool) -> pd.DataFrame:
    return per_split(pairs, by_level).assign(metric_name=lambda d: d.metric.map(display_name))


def figure_split_distance(pairs: pd.DataFrame, out: Path) -> list[Path]:
    """Figure 1: internal and external split distance per metric, as the paper's caption defines it:
    each split's mean distance to the splits it is compared with, pooled over seeds."""
    splits = _per_split(pairs, by_level=False)
    n_seeds = splits.seed.nunique()
    order = _order(splits.metric)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(order) * 2), 4), sharey=True)
    for ax, kind, letter in zip(axes, ("internal", "external"), "ab"):
        _splits_and_seed_means(ax, splits[splits.kind == kind], order)
        ax.set_title(f"({letter}) {kind} split distance")
        ax.set_xlabel("metric")
        ax.set_ylabel(Y_LABEL)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(f"Split distance per metric: boxes and dots over splits ({n_seeds} seeds pooled; a split's value is "
                 "its mean distance to the splits it is compared with), black diamonds: each seed's mean", fontsize=9)
    return _save(fig, out, splits.drop(columns="metric_name"))


def figure_split_distance_by_level(pairs: pd.DataFrame, out: Path) -> list[Path]:
    """Figure 2: split distance by depth, internal on top and external below; pairs at equal depth."""
    splits = _per_split(pairs, by_level=True)
    n_seeds = splits.seed.nunique()
    order = _order(splits.metric)
    levels = [f"depth {d}" for d in sorted(splits.depth.unique())]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(order)), 7), sharex=True)
    for ax, kind in zip(axes, ("internal", "external")):
        df = splits[splits.kind == kind].assign(level=lambda d: "depth " + d.depth.astype(str))
        _splits_and_seed_means(ax, df, order, hue="level", hue_order=levels)
        ax.set_title(f"{kind} split distance by depth level")
        ax.set_xlabel("metric")
        ax.set_ylabel(Y_LABEL)
        ax.tick_params(axis="x", rotation=45)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles[: len(levels)], labels[: len(levels)], title="level (0 = root's split)",
               loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"Split distance by depth level ({n_seeds} seeds pooled; only splits at the same depth are compared;"
                 " boxes over splits, black diamonds: seed means)", fontsize=9)
    return _save(fig, out, splits.drop(columns="metric_name"))


def figure_between_metrics(pairs: pd.DataFrame, out: Path) -> list[Path]:
    """Heat map of the mean split distance between two metrics' splits at the same seed and node."""
    between = pairs[pairs.kind == "between_metrics"]
    if between.empty:
        return _nothing_to_compare("Mean split distance between metrics", "this run has one metric", out)
    order = _ordered(set(between.metric_a) | set(between.metric_b))
    mat = pd.DataFrame(0.0, index=order, columns=order)
    for (a, b), d in between.groupby(["metric_a", "metric_b"]):
        mat.loc[a, b] = mat.loc[b, a] = d.distance.mean()
    mat.index = mat.columns = [display_name(m) for m in order]
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(order), 0.8 + 0.6 * len(order)))
    sns.heatmap(mat, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": Y_LABEL}, square=True)
    n_seeds = between.seed_a.nunique()
    ax.set_title(f"Mean split distance between metrics\n(same seed and node; {n_seeds} seeds; 0 = identical splits)")
    return _save(fig, out)


def figure_trees(splits: pd.DataFrame, seed: int, out: Path) -> list[Path]:
    """Every metric's tree for one seed: each node with its edge and its operation groups."""
    at = splits[splits.seed == seed]
    metrics = _ordered(at.metric)
    depth = int(at.depth.max()) + 1
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 0.9 + 1.6 * depth * nrows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    for ax, metric in zip(axes.flat, metrics):
        tree = at[at.metric == metric].set_index("node")
        pos = _layout(list(tree.index))
        for node, (x, y) in pos.items():
            rec = tree.loc[node]
            groups = "\n".join("{" + ", ".join(SHORT_OPS[o] for o in g) + "}" for g in rec.groups)
            ax.text(x, y, f"{node}: edge {rec.edge_name}\n{groups}", ha="center", va="center", fontsize=6,
                    bbox=dict(boxstyle="round", fc="#eef4fb", ec="#1f4e79"))
            if node != "r" and node[:-1] in pos:
                px, py = pos[node[:-1]]
                ax.plot([px, x], [py - 0.18, y + 0.18], color="#888", lw=0.8, zorder=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(-depth + 0.5, 0.5)
        ax.axis("off")
        ax.set_title(f"{display_name(metric)}: splitting tree, seed {seed}", fontsize=10, loc="left")
    fig.suptitle("Splits chosen by each metric (node: split edge, then the operation groups of its children)", y=1.0)
    fig.tight_layout()
    return _save(fig, out)


def _layout(nodes: list[str]) -> dict[str, tuple[float, float]]:
    """(x, y) of each node, its children spread evenly under it (a child's name is its parent's plus
    its index, so the digits are a mixed-radix position)."""
    radix = {}
    for n in nodes:
        for d, digit in enumerate(n[1:]):
            radix[d] = max(radix.get(d, 1), int(digit) + 1)
    pos = {}
    for n in nodes:
        k, width = 0, 1
        for d, digit in enumerate(n[1:]):
            k, width = k * radix[d] + int(digit), width * radix[d]
        pos[n] = ((k + 0.5) / width, -(len(n) - 1))
    return pos


def draw_all(splits: pd.DataFrame, pairs: pd.DataFrame, out_dir: Path, seed: int | None = None) -> list[Path]:
    """Every figure of a run into ``out_dir``."""
    seed = int(splits.seed.min()) if seed is None else seed
    files = figure_split_distance(pairs, out_dir / "fig1_split_distance")
    files += figure_split_distance_by_level(pairs, out_dir / "fig2_split_distance_by_level")
    files += figure_between_metrics(pairs, out_dir / "between_metrics")
    files += figure_trees(splits, seed, out_dir / "trees")
    return files


def figure_ranking(ranking: pd.DataFrame, out: Path, draws: int = 1000) -> list[Path]:
    """Kendall tau between leaf-inherited and standalone accuracy per metric: a point per tree (seed),
    the mean over trees with its 95% bootstrap interval; the one-shot baseline and random as lines."""
    from fewshot_core.ranking import ONESHOT, metric_intervals

    order = [m for m in _ordered(set(ranking.metric) - {ONESHOT})] + [ONESHOT]
    order = [m for m in order if m in set(ranking.metric)]
    summary = metric_intervals(ranking, draws).set_index("metric").loc[order]
    names = [display_name(m) if m != ONESHOT else "one-shot\n(baseline)" for m in order]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(order)), 4.5))
    for i, m in enumerate(order):
        taus = ranking[ranking.metric == m].tau
        ax.scatter([i] * len(taus), taus, s=14, color="#1f4e79", alpha=0.6, zorder=2)
        row = summary.loc[m]
        ax.errorbar(i, row.tau_mean, yerr=[[row.tau_mean - row.tau_mean_lo], [row.tau_mean_hi - row.tau_mean]],
                    fmt="D", color="black", capsize=4, zorder=3)
    for m, style in ((ONESHOT, "--"), ("random", ":")):
        if m in summary.index:
            ax.axhline(summary.loc[m].tau_mean, color="#b03a2e", ls=style, lw=1,
                       label=f"{'one-shot' if m == ONESHOT else 'random splits'}: mean tau")
    ax.set_xticks(range(len(order)), names, rotation=45, ha="right")
    ax.set_ylabel("Kendall tau, inherited vs standalone")
    ax.set_title(f"Ranking of {int(ranking.archs.iloc[0])} study architectures\ndots: one tree (seed) each; "
                 "diamonds: the mean, with its 95% bootstrap interval over trees", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out, summary.reset_index())


def spread_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per metric and kind: the mean and std over splits (pooled over seeds, as Figure 1's boxes) and
    over seed means (as its diamonds), and how many of each."""
    splits = per_split(pairs)
    seeds = summarise(pairs)
    over_splits = splits.groupby(["metric", "kind"]).distance.agg(["mean", "std", "count"])
    over_seeds = seeds.groupby(["metric", "kind"]).distance.agg(["mean", "std", "count"])
    table = pd.concat({"splits": over_splits, "seed means": over_seeds}, axis=1)
    table.columns = [f"{over} {stat}" for over, stat in table.columns]
    return table.reindex(_ordered(splits.metric), level="metric")


def ranking_text(ranking: pd.DataFrame, draws: int = 1000) -> str:
    """The ranking study as text: per metric over trees, then per tree."""
    from fewshot_core.ranking import metric_intervals

    per_metric = metric_intervals(ranking, draws)
    return "\n".join([
        f"Ranking study ({int(ranking.archs.iloc[0])} architectures): Kendall tau and Spearman rho between",
        "leaf-inherited and standalone accuracy, mean over trees (seeds) with the 95% bootstrap interval of the mean;",
        "regret: best standalone accuracy of the set minus that of the top-1 by inherited accuracy:",
        per_metric.round(3).to_string(index=False), "", "Per tree (tau_lo, tau_hi: 95% bootstrap over architectures):",
        ranking.drop(columns=["top1_arch"]).round(3).to_string(index=False)])


def summary_text(splits: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """The splits and distances of a run as plain-text tables."""
    lines = ["Splits (metric, seed, node: edge -> groups):"]
    for r in splits.sort_values(["metric", "seed", "depth", "node"]).itertuples():
        groups = " | ".join("{" + ",".join(SHORT_OPS.get(o, o) for o in g) + "}" for g in r.groups)
        lines.append(f"  {r.metric:9s} seed {r.seed:<3d} {r.node:5s} edge {r.edge_name}: {groups}")
    lines += ["", "Split distance per metric: mean, std and count over splits (a split's value: its mean distance",
              "to the splits it is compared with; seeds pooled) and over seed means (Figure 1):",
              spread_table(pairs).round(3).to_string()]
    by = summarise(pairs, by_level=True).groupby(["kind", "depth", "metric"]).distance.mean().unstack("metric")
    lines += ["", "By depth level (mean of seed means):", by.round(3).to_string()]
    return "\n".join(lines)
