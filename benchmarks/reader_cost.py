"""What a reader pays to compare the bytes it read with the digest its record names, at the paper's size.

Writes, in a temporary folder, files of the sizes the paper's configuration (``config/paper.yaml``: 10 seeds,
depth-3 trees of 8 leaves, six edges of five operations) gives its largest files of each format: a scores
table (4 nodes x 6 edges x 5 operations, each row with its similarity row), a split file (4 nodes) and the
split-distance table (every pair of the run's splits, metric by metric and between metrics), then times
reading each with the check and the same read without it.

    python benchmarks/reader_cost.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fewshot_core import artifacts  # noqa: E402
from fewshot_core.columns import PAIR_COLUMNS, SCORE_COLUMNS  # noqa: E402


def scores(rng: np.random.Generator) -> pd.DataFrame:
    rows = [dict(metric="snip", seed=0, node=f"r{n}", depth=2, edge=e, op=o, value=float(rng.normal()),
                 parent_value=float(rng.normal()), similarity=rng.normal(size=5).tolist(), seconds=float(rng.random()))
            for n in range(4) for e in range(6) for o in range(5)]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def pairs(rng: np.random.Generator, metrics: int, seeds: int = 10, depths: int = 3) -> pd.DataFrame:
    """Every pair of the run's splits at one depth (1, 2 and 4 splits per tree), across metrics and seeds: at
    least as many rows as the split-distance table lists."""
    n = sum((k := metrics * seeds * 2**d) * (k - 1) // 2 for d in range(depths))
    return pd.DataFrame({
        "kind": rng.choice(["internal", "external", "between"], n), "metric_a": "snip", "metric_b": "grasp",
        "seed_a": rng.integers(0, seeds, n), "seed_b": rng.integers(0, seeds, n), "node_a": "r0", "node_b": "r1",
        "depth_a": 1, "depth_b": 1, "edge_a": rng.integers(0, 6, n), "edge_b": rng.integers(0, 6, n), "same_depth": True,
        "distance": rng.random(n)})[list(PAIR_COLUMNS)]


def timed(read, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        read()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", type=int, default=9, help="the paper's trees' metrics (config/paper.yaml)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp, "split_L2.json")
        records = [{"node": f"r{n}", "depth": 2, "edge": 3, "groups": [["none", "skip_connect"], ["nor_conv_1x1"]],
                    "cut": 1.0, "ops": ["none", "skip_connect", "nor_conv_1x1"], "similarity": [[1.0] * 3] * 3,
                    "metric": "snip", "seed": 0, "edges": {str(e): 0.5 for e in range(6)}} for n in range(4)]
        artifacts.write_json({"provenance": {"kind": "splits"}, "splits": records}, split)
        cases = [("split file (JSON)", split, lambda: artifacts.read_json(split, {}), lambda: json.loads(split.read_text()))]
        for name, df in (("scores table", scores(rng)), ("split-distance table", pairs(rng, args.metrics))):
            path = Path(tmp, f"{name.split()[0]}.parquet")
            artifacts.write_table(df, path, {"kind": name})
            cases.append((f"{name} ({len(df):,} rows)", path, lambda p=path: artifacts.read_table(p, {}),
                          lambda p=path: pq.read_table(p).to_pandas()))
        for name, path, checked, plain in cases:
            with_check, without = timed(checked, args.repeats), timed(plain, args.repeats)
            print(f"{name}, {path.stat().st_size / 1e3:,.0f} kB: read and checked {with_check * 1e3:.1f} ms, "
                  f"read alone {without * 1e3:.1f} ms (median of {args.repeats})")


if __name__ == "__main__":
    main()
