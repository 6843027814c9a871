"""What one study evaluation costs at the paper's size: an architecture's batch norm re-estimated on the
leaves' training batches, then its accuracy on a CIFAR-10-sized test part (10,000 images), with a
C=16, N=5 supernet's weights (what `evaluate_study` does per architecture), beside the training-free
scoring of one architecture by each metric (what `score_study` does).

    python benchmarks/study_evaluation.py                 # 3 architectures, on the GPU when there is one
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fewshot_core import data, metrics  # noqa: E402
from fewshot_core.checks import load_settings  # noqa: E402
from fewshot_core.device import resolve as resolve_device  # noqa: E402
from fewshot_core.metrics import Batch  # noqa: E402
from fewshot_core.nb201 import (
    arch_to_mask,  # noqa: E402
    study_set,  # noqa: E402
)
from fewshot_core.space import Supernet  # noqa: E402
from fewshot_core.train import evaluate_architectures, test_images  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    s = load_settings({"run": "x", "seeds": [0], "metrics": {"snip": {}}})
    d = data.synthetic(n_train=2048, n_test=10000, input_size=32)
    archs = study_set(args.archs, 0)[0]
    torch.manual_seed(0)
    net = Supernet(C=16, N=5, input_size=32).to(device)
    images = test_images(d, device)
    t0 = time.perf_counter()
    evaluate_architectures(net, d, np.arange(2048), images, archs, s.evaluation, 0, device=device, prefix="test")
    per_arch = (time.perf_counter() - t0) / len(archs)
    print(f"evaluation of one architecture (BN on {s.evaluation.bn_batches} x {s.evaluation.batch_size} training "
          f"images, accuracy on 10,000 test images), C=16 N=5 32x32: {per_arch:.2f} s on {device} "
          f"(mean of {len(archs)})")
    batch = Batch(data.normalize(d.train_x[:64], d).to(device), d.train_y[:64].to(device))
    for name in ("gradnorm", "snip", "synflow", "jacobcov", "ntk", "nparams"):
        t0 = time.perf_counter()
        for arch in archs:
            net.set_mask(arch_to_mask(arch), connected=False)
            metrics.value(name, net, [Batch(batch.inputs[:16], batch.targets[:16])] if name == "ntk" else [batch])
        print(f"training-free score of one architecture by {name}: {(time.perf_counter() - t0) / len(archs):.2f} s "
              f"on {device}")


if __name__ == "__main__":
    main()
