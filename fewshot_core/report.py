"""The paper's figures and the ones beyond it, drawn with seaborn from a run's tables.

Figure 1: internal (a) and external (b) split distance per metric, spread over seeds.
Figure 2: the same by depth level, internal on top, external below.
Beyond the paper: the mean distance between metrics (heat map) and each metric's tree for one seed.
"""

from __future__ import annotations

import inspect
import io
import re
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from fewshot_core import artifacts, freshness  # noqa: E402
from fewshot_core.catalog import CATALOG, display_name  # noqa: E402
from fewshot_core.distance import per_split, summarise  # noqa: E402
from fewshot_core.errors import ArtifactError  # noqa: E402
from fewshot_core.outputs import (  # noqa: E402
    FIGURES,
    OUTPUTS,
    PAIR_COLUMNS,
    RANKING_COLUMNS,
    SPLIT_COLUMNS,
    SUMMARY_COLUMNS,
    figures_of,
)

SHORT_OPS = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "conv1x1", "nor_conv_3x3": "conv3x3",
             "avg_pool_3x3": "pool"}
Y_LABEL = "split distance S (operations moved)"


def _ordered(metrics) -> list[str]:
    """The run's metrics in the catalogue's order (any it does not know, after them, by name)."""
    present = set(metrics)
    return [m for m in CATALOG if m in present] + sorted(present - set(CATALOG))


def _order(metrics: pd.Series) -> list[str]:
    return [display_name(m) for m in _ordered(metrics)]


#: Metadata left out of the figures' files (the drawing library's version, the time of drawing), so that
#: the same values give the same bytes.
NO_METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}


def _save(fig: plt.Figure, stem: Path, data: pd.DataFrame | None = None) -> list[Path]:
    """The figure as PNG and PDF, and the values it plots as CSV beside them (when given), each written
    atomically (never through a link)."""
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    if data is not None:
        out.append(stem.with_suffix(".csv"))
        artifacts.atomic_write_bytes(out[2], data.to_csv(index=False).encode())
    for path in out[:2]:
        buffer = io.BytesIO()
        fmt = path.suffix[1:]
        fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight", metadata=NO_METADATA[fmt])
        artifacts.atomic_write_bytes(path, buffer.getvalue())
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
    state = np.random.get_state()  # seaborn jitters with numpy's global generator: fixed, so that a figure
    np.random.seed(0)  # is the same file every time it is drawn from the same values
    try:
        sns.stripplot(data=df, **common, palette=palette, dodge=hue is not None,
                      color="#1f4e79" if hue is None else None, size=3, alpha=0.6, legend=False)
    finally:
        np.random.set_state(state)
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


def draw(name: str, out_dir: Path, **tables) -> list[Path]:
    """The catalogue's figure ``name`` (:data:`fewshot_core.outputs.FIGURES`) into ``out_dir``, drawn by its
    function from those of ``tables`` it takes."""
    figure = FIGURES[name]
    function = globals()[figure.draw]
    wanted = inspect.signature(function).parameters
    return function(**{k: v for k, v in tables.items() if k in wanted}, out=out_dir / figure.name)


def draw_all(splits: pd.DataFrame, pairs: pd.DataFrame, out_dir: Path, seed: int | None = None) -> list[Path]:
    """Every figure the split distances make (``draw_figures``) into ``out_dir``; the trees of ``seed`` (the
    first by default)."""
    seed = int(splits.seed.min()) if seed is None else seed
    return [path for f in figures_of("draw_figures")
            for path in draw(f.name, out_dir, splits=splits, pairs=pairs, seed=seed)]


def figure_ranking(ranking: pd.DataFrame, summary: pd.DataFrame, out: Path, protocol: dict) -> list[Path]:
    """(a) Kendall tau against the ground truth per tree metric and control (a dot per tree, the mean with
    its interval), each one-shot baseline, the metric's own training-free ranking (a cross), the parameter
    count (a line) and the ground truth's own agreement (the grey band); (b) each metric's and control's
    paired difference with random splits and with the one-shot baseline of its tree's steps, with its
    interval and the share of resamples it wins; (c) what each ranking knows beyond the parameter count:
    its tau over the pairs of architectures of equal parameter count. The CSV holds ``summary``, the
    study's summary table, as it is."""
    from fewshot_core.labels import CEILING, ONESHOT, RANDOM

    trees = _ordered(ranking[ranking.kind == "tree"].name)
    controls = list(dict.fromkeys(ranking[ranking.kind == "control"].name))
    oneshots = sorted(ranking[ranking.kind == "one-shot"].name.unique(),
                      key=lambda n: -int(re.search(r"\d+", n).group()))
    kinds = {**{m: "tree" for m in trees}, **{m: "control" for m in controls}, **{m: "one-shot" for m in oneshots}}
    order = trees + controls + oneshots
    rows = summary.set_index(["kind", "name"])
    zero = ranking[ranking.kind == "zero-cost"].set_index("name")
    compared = [t for t in trees if t != RANDOM] + controls
    beyond = [(kinds[m], m) for m in order] + [("zero-cost", p) for p in zero.index]
    fig = plt.figure(figsize=(max(11, 0.55 * (len(compared) + len(beyond)) + 4), 9.5))
    grid = fig.add_gridspec(2, 2, width_ratios=[max(len(compared), 1), len(beyond)])
    ax, bx, cx = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    ceiling = ranking[ranking.kind == "ceiling"]
    if not ceiling.empty:
        c = ceiling.iloc[0]
        ax.axhspan(c.tau_lo, c.tau_hi, color="0.85", zorder=0,
                   label=f"{CEILING}: tau {c.tau:.2f} (ceiling), its 95% interval")
        ax.axhline(c.tau, color="0.55", lw=1, zorder=1)
    if "nparams" in zero.index:
        ax.axhline(zero.loc["nparams"].tau, color="#7d3c98", ls="--", lw=1,
                   label=f"#params, training-free: tau {zero.loc['nparams'].tau:.2f}")
    for i, name in enumerate(order):
        kind = kinds[name]
        taus = ranking[(ranking.kind == kind) & (ranking.name == name)].tau
        ax.scatter([i] * len(taus), taus, s=14, color="#1e8449" if kind == "control" else "#1f4e79", alpha=0.6,
                   zorder=2)
        r = rows.loc[(kind, name)]
        ax.errorbar(i, r.tau, yerr=[[r.tau - r.tau_lo], [r.tau_hi - r.tau]], fmt="D", color="black", capsize=4, zorder=3)
        if kind == "tree" and name in zero.index:
            ax.scatter(i + 0.2, zero.loc[name].tau, marker="x", color="#b03a2e", zorder=3,
                       label="the metric's own training-free ranking" if name == [n for n in trees
                                                                                   if n in zero.index][0] else None)
    if controls:
        ax.axvspan(len(trees) - 0.5, len(trees) + len(controls) - 0.5, color="#d5f5e3", zorder=0, label="controls")
    ax.set_xticks(range(len(order)), [_label(m) for m in order], rotation=45, ha="right")
    ax.set_ylabel(f"Kendall tau against the ground truth's {measure(protocol)}")
    ax.set_title(f"(a) Ranking {int(ranking.archs.iloc[0])} study architectures: {data_caption(protocol)}\n"
                 "dots: one tree (seed) each; diamonds: the mean, 95% interval over architectures and seeds", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    deltas = pd.DataFrame([rows.loc[(kinds[m], m)] for m in compared], index=compared)
    for j, (column, colour, label) in enumerate((("vs_random", "#1f4e79", "vs random splits"),
                                                 ("vs_structure", "#1e8449", "vs the split by structure"),
                                                 ("vs_oneshot", "#b03a2e", f"vs {ONESHOT} of the tree's steps"))):
        xs = np.arange(len(deltas)) + (j - 1) * 0.25
        d = deltas[column].to_numpy(float) if len(deltas) else np.array([])
        lo, hi = (deltas[f"{column}_lo"].to_numpy(float), deltas[f"{column}_hi"].to_numpy(float)) if len(deltas) \
            else (d, d)
        bx.errorbar(xs, d, yerr=[d - lo, hi - d], fmt="o", color=colour, capsize=3, label=label)
        for x, v, w in zip(xs, d, deltas[f"{column}_wins"] if len(deltas) else []):
            if np.isfinite(v):
                bx.annotate(f"{w:.0%}", (x, v), textcoords="offset points", xytext=(0, -12), ha="center", fontsize=6,
                            color=colour)
    bx.axhline(0, color="black", lw=0.8)
    bx.set_xticks(range(len(deltas)), [_label(m) for m in deltas.index], rotation=45, ha="right")
    bx.set_ylabel("paired difference in mean tau")
    bx.set_title("(b) each tree against random splits, the split by structure and one-shot\n(the same resamples; "
                 "% of resamples won)",
                 fontsize=9)
    bx.legend(fontsize=7, loc="best")
    for i, (kind, name) in enumerate(beyond):
        r = rows.loc[(kind, name)]
        colour = {"control": "#1e8449", "one-shot": "#7f8c8d", "zero-cost": "#b03a2e"}.get(kind, "#1f4e79")
        if np.isfinite(r.tau_same_params):
            cx.errorbar(i, r.tau_same_params, yerr=[[max(r.tau_same_params - r.tau_same_params_lo, 0)],
                                                    [max(r.tau_same_params_hi - r.tau_same_params, 0)]],
                        fmt="x" if kind == "zero-cost" else "D", color=colour, capsize=3)
    if not ceiling.empty and np.isfinite(ceiling.iloc[0].tau_same_params):
        c = ceiling.iloc[0]
        cx.axhspan(c.tau_same_params_lo, c.tau_same_params_hi, color="0.85", zorder=0)
        cx.axhline(c.tau_same_params, color="0.55", lw=1, label=f"{CEILING}: {c.tau_same_params:.2f}")
        cx.legend(fontsize=7, loc="best")
    cx.axhline(0, color="black", lw=0.8)
    cx.set_xticks(range(len(beyond)), [_label(n) + (" (free)" if k == "zero-cost" else "") for k, n in beyond],
                  rotation=45, ha="right")
    cx.set_ylabel("Kendall tau, pairs of equal #params")
    cx.set_title("(c) beyond the parameter count: tau over the pairs it cannot order\n(pooled; 95% interval)",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, out, summary)


def _label(name: str) -> str:
    """A ranking's name on an axis: a metric's or control's display name, a one-shot baseline on two lines."""
    from fewshot_core.labels import ONESHOT

    return name.replace(f"{ONESHOT} ", "one-shot\n") if name.startswith(ONESHOT) else display_name(name)


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


def against_baseline(pairs: pd.DataFrame, baseline: str = "random") -> pd.DataFrame | None:
    """Per metric, its seed's mean internal split distance minus the baseline's (random splits) for the same
    seed: the mean difference over seeds, its standard error, and the seeds in which the metric's splits are
    the more consistent. Whether a metric's consistency stands out from the seeds' spread; None without
    the baseline."""
    seeds = summarise(pairs)
    table = seeds[seeds.kind == "internal"].pivot(index="seed", columns="metric", values="distance")
    if baseline not in table:
        return None
    diff = table.drop(columns=baseline).sub(table[baseline], axis=0)
    n = diff.notna().sum()
    out = pd.DataFrame({"difference": diff.mean(), "std_error": diff.std() / np.sqrt(n),
                        "seeds_below": (diff < 0).sum(), "seeds": n})
    return out.reindex(_ordered(out.index))


def data_caption(protocol: dict) -> str:
    """Which images and networks a study rests on, and its ground truth, in a few words."""
    d, net = protocol.get("data"), protocol.get("network")
    if d is None:  # a table made before the protocol named its data
        return "data not recorded"
    images = "all training images" if d["train_images"] is None else f"{d['train_images']:,} training images"
    truth = ("NAS-Bench-201's accuracies" if protocol["ground_truth"] == "nats_bench" else
             f"{protocol['gt_seeds']} standalone trainings of {protocol['standalone_epochs']} epochs")
    return (f"{d['name']} {d['input_size']}x{d['input_size']} ({images}), C={net['C']} N={net['N']}; "
            f"ground truth: {truth}, ranked by {measure(protocol)}")


def measure(protocol: dict) -> str:
    """What a study's rankings are compared on: the ground truth's mean test loss or accuracy."""
    return f"mean test {protocol['rank_by']}"


def ranking_text(ranking: pd.DataFrame, summary: pd.DataFrame, protocol: dict) -> str:
    """The ranking study as text: the protocol, the ceiling, per metric and baseline, then per ranking."""
    from fewshot_core.labels import CEILING

    p = protocol
    start = (f"transfer: each seed's one-shot supernet pretrained {p['pretrain_epochs']} epochs, every leaf inherits "
             f"it and trains {p['leaf_epochs']} more" if p["protocol"] == "transfer"
             else f"scratch: every leaf trains {p['leaf_epochs']} epochs from a fresh initialisation")
    budgets = ", ".join(f"{epochs} epochs ({b} lea{'f' if b == '1' else 'ves'})" for b, epochs in p["oneshot_epochs"].items())
    lines = [f"Ranking study ({int(ranking.archs.iloc[0])} architectures) on {data_caption(p)}. Protocol {start}; "
             "one-shot baselines: the same start, trained as long as a tree's leaves or "
             f"one leaf: {budgets}; each tree is compared with the one of its own steps. Every accuracy the tool "
             "measures is on the test part. tau_same_params: the tau over the pairs of architectures of equal "
             "parameter count (what a ranking knows beyond it)."]
    ceiling = summary[summary.kind == "ceiling"]
    if ceiling.empty:
        lines.append("One ground-truth seed: the ground truth's own agreement (the ceiling) is unknown.")
    else:
        c = ceiling.iloc[0]
        lines.append(f"Ceiling: the ground truth's seeds agree at tau {c.tau:.3f} ({c.tau_lo:.3f} to {c.tau_hi:.3f}) "
                     f"on their {measure(p)} ({c.tau_accuracy:.3f} on accuracy, {c.tau_loss:.3f} on loss; "
                     f"{CEILING}); no ranking can be told apart beyond it.")
    shown = summary.copy()
    if not ceiling.empty:  # beside every tau, what the ground truth allows
        shown.insert(list(shown.columns).index("tau_hi") + 1, "ceiling", ceiling.iloc[0].tau)
    lines += ["", "Per metric and baseline: mean over rankings; tau_lo, tau_hi: 95% bootstrap interval of the mean "
              "over architectures and seeds; ceiling: the ground truth seeds' own tau; vs_random, vs_structure, vs_oneshot: "
              "paired difference in mean tau on the same resamples, its interval, the share of resamples in "
              "which the tree wins, and the smallest difference the study could tell from zero (detectable: the "
              "interval's half-width):",
              shown.round(3).to_string(index=False), "", "Per ranking (tau_lo, tau_hi: over architectures):",
              ranking.drop(columns=["top1_arch"]).round(3).to_string(index=False)]
    return "\n".join(lines)


def summary_text(splits: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """The splits and distances of a run as plain-text tables."""
    lines = ["Splits (metric, seed, node: edge -> groups):"]
    for r in splits.sort_values(["metric", "seed", "depth", "node"]).itertuples():
        groups = " | ".join("{" + ",".join(SHORT_OPS.get(o, o) for o in g) + "}" for g in r.groups)
        lines.append(f"  {r.metric:9s} seed {r.seed:<3d} {r.node:5s} edge {r.edge_name}: {groups}")
    lines += ["", "Split distance per metric: mean, std and count over splits (a split's value: its mean distance",
              "to the splits it is compared with; seeds pooled) and over seed means (Figure 1):",
              spread_table(pairs).round(3).to_string()]
    versus = against_baseline(pairs)
    lines.append("")
    if versus is None:
        lines.append("No random splits in this run to compare with: add `random: {}` to the metrics.")
    else:
        lines += ["Internal split distance against random splits (the metric's minus random's, seed by seed; "
                  "below 0: more", "consistent than random): mean over seeds, its standard error, and the "
                  "seeds in which the metric is below:", versus.round(3).to_string()]
    by = summarise(pairs, by_level=True).groupby(["kind", "depth", "metric"]).distance.mean().unstack("metric")
    lines += ["", "By depth level (mean of seed means):", by.round(3).to_string()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the run's summary


def read_run_tables(splits: Path, distance: Path, expected: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's split table and split-distance table, checked (``expected``: the run and key the split table's
    record must name; None: the two must be the halves of one job's output)."""
    table = artifacts.read_table(splits, {"kind": "splits_table", **(expected or {})}, columns=SPLIT_COLUMNS)
    pairs = artifacts.read_table(distance, {"kind": "split_distance", "run": table.attrs["provenance"]["run"],
                                            "settings": table.attrs["provenance"]["settings"]}, columns=PAIR_COLUMNS)
    return table, pairs


def devices_of(run_dir: Path) -> Counter:
    """How many of a run's files were computed on each device, as their records say."""
    found: Counter = Counter()
    for out in OUTPUTS.values():
        for path in sorted(run_dir.glob(re.sub(r"\{\w+\}", "*", out.template))):
            try:
                device = (artifacts.read_record(path, out.format) or {}).get("device")
            except ArtifactError:
                continue  # an unreadable file is the start-up check's to report
            if device:
                found[device] += 1
    return found


def devices_line(found: Counter) -> str:
    """One sentence on where a run's files were computed; a run that mixed devices is named as such."""
    listed = ", ".join(f"{d} ({n} file{'s' * (n != 1)})" for d, n in sorted(found.items()))
    if len({d.split(":")[0] for d in found}) > 1:
        return (f"Computed on more than one device: {listed}; results agree across devices to floating-point "
                "rounding, not bit for bit (docs/design.md §10).")
    return f"Computed on {listed}." if found else ""


def summary(run_dir: Path) -> str:
    """A finished run's splits and split distances as text, and its ranking study when it has one and it
    was made from the same trees and leaves; each section says which tables and settings it comes from."""
    files = {k: run_dir / OUTPUTS[k].template for k in ("splits_table", "split_distance", "leaves_table", "ranking",
                                                        "study_summary")}
    for k in ("splits_table", "split_distance"):
        if not files[k].exists():
            raise ArtifactError(f"{files[k]} does not exist: run the workflow (snakemake splits) first")
    splits, pairs = read_run_tables(files["splits_table"], files["split_distance"])
    made = splits.attrs["provenance"]
    trees = sorted({(m, int(s)) for m, s in zip(splits.metric, splits.seed)})
    stale = freshness.stale_in_run(run_dir)
    table_behind = stale.get(str(files["splits_table"]))
    warning = (f"Note: {files['splits_table']} is not what the split files there and this code make "
               f"({table_behind}); `snakemake splits` remakes it.\n\n" if table_behind else "")
    text = (f"{warning}Run {made['run']!r}: {len(trees)} trees ({len({m for m, _ in trees})} metrics x "
            f"{len({s for _, s in trees})} seeds), from {files['splits_table'].name} and "
            f"{files['split_distance'].name} (key {made['key']}). {devices_line(devices_of(run_dir))}\n\n"
            + summary_text(splits, pairs))
    if not files["ranking"].exists():
        return text
    try:
        ranking = artifacts.read_table(files["ranking"], {"kind": "ranking", "run": made["run"]},
                                       columns=RANKING_COLUMNS)
    except ArtifactError as err:  # out of date (a study chunk remade since), damaged: the trees above still hold
        return text + f"\n\nRanking study: not shown: {err}"
    study = ranking.attrs["provenance"]
    behind = [f"{files[k]} ({stale[str(files[k])]})" for k in ("splits_table", "ranking") if str(files[k]) in stale]
    if behind:
        return text + (f"\n\nRanking study: not shown: {'; '.join(behind)}: the ranking is not what this run's trees "
                       "and this code make. `snakemake study` (with this run's configuration) remakes it.")
    means = artifacts.read_table(files["study_summary"], {"kind": "study_summary", "run": made["run"],
                                                          "settings": study["settings"]}, columns=SUMMARY_COLUMNS)
    return text + (f"\n\nFrom {files['ranking'].name} and {files['study_summary'].name} (key {study['key']}), "
                   "made from the trees above.\n" + ranking_text(ranking, means, study["settings"]["protocol"]))
