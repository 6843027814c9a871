"""The start-up check at a configuration's full size without running it: a synthetic record for every output.

Writes, in a temporary folder, one file per output of the configuration holding the record its job would
write (its key, spec and code digests, a content digest; the holdouts the data files' record). Then times
``fewshot_core.freshness.check`` over them, every record current, and ``freshness.mark``, which dates every
output's stamp (as at each start of a finished run).
CIFAR-10's folder and NAS-Bench-201's archive are made empty where the configuration names them.

    python benchmarks/startup_records.py config/paper.yaml --repeats 3
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_records(settings, workdir: Path) -> int:
    """One file per output of ``settings`` under ``workdir`` with its record; returns the inputs' keys named."""
    from fewshot_core import artifacts, digests
    from fewshot_core.outputs import OUTPUTS

    run_dir = f"results/{settings.run}"
    outputs = [(kind, identity, workdir / OUTPUTS[kind].path(run_dir, **identity)) for kind, identity in settings.outputs()]
    content = {path: digests.short(str(path)) for _, _, path in outputs}
    data_file = workdir / "data.bin"
    data_file.write_bytes(b"x" * 1024)
    named = 0
    for kind, identity, path in outputs:
        out = OUTPUTS[kind]
        spec = settings.spec_for(kind, identity)
        named += sum(len(v) if isinstance(v, list) else 1 for v in getattr(spec, "inputs", {}).values())
        record = artifacts.record(out, spec, content=content[path],
                                  **({"data_files": digests.of_data_files([data_file])} if kind == "holdout" else {}))
        path.parent.mkdir(parents=True, exist_ok=True)
        if out.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(pd.DataFrame({"x": [0]}))
            buf = io.BytesIO()
            pq.write_table(table.replace_schema_metadata({artifacts.PROVENANCE_KEY: json.dumps(record).encode()}), buf)
            path.write_bytes(buf.getvalue())
        elif out.format == "json":
            path.write_text(json.dumps({"provenance": record}))
        else:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("format", artifacts.WEIGHTS_FORMAT)
                z.writestr("provenance.json", json.dumps(record))
                z.writestr("tensors.pt", b"")
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configfile", type=Path, help="a configuration, e.g. config/paper.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from fewshot_core import freshness
    from fewshot_core.checks import load_settings

    config = yaml.safe_load(args.configfile.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = config.get("data", {})
        if data.get("name") == "cifar10":
            (work / data["root"] / "cifar-10-batches-bin").mkdir(parents=True)
        truth = config.get("study", {}).get("ground_truth", {})
        if truth.get("source") == "nats_bench":
            from tests.benchmark_archive import write_complete_archive

            write_complete_archive(work / truth["path"])
        settings = load_settings(config, workdir=work)
        t0 = time.perf_counter()
        named = write_records(settings, work)
        print(f"{len(settings.outputs())} synthetic records naming {named} inputs written in "
              f"{time.perf_counter() - t0:.1f} s")
        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            findings = freshness.check(settings, work)
            walls.append(time.perf_counter() - t0)
        print(f"start-up check: {statistics.median(walls):.3f} s (median of {args.repeats}; "
              f"{', '.join(f'{w:.3f}' for w in walls)}), {len(findings)} found stale")
        marks = []
        for _ in range(args.repeats):  # the first writes every stamp, the others find them dated already
            t0 = time.perf_counter()
            freshness.mark(settings, findings, work)
            marks.append(time.perf_counter() - t0)
        print(f"stamps: {', '.join(f'{w:.3f}' for w in marks)} s (the first writes them)")


if __name__ == "__main__":
    main()
