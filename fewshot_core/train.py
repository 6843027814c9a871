"""Training a (sub-)supernet, resumable and deterministic, and evaluating the architectures of a leaf.

docs/design.md §4: SGD (momentum 0.9, Nesterov), lr 0.025 cosine to 0.001, weight decay 5e-4, gradient
clipping 5 (GM-NAS); every figure comes from :class:`~fewshot_core.settings.TrainSettings`. The job
checkpoints every epoch (model, optimizer, scheduler, every random generator, epoch); a restarted
job resumes from its last checkpoint, and ends bit-identical to an uninterrupted run on the CPU,
only when the checkpoint was made by the same settings, seed, supernet, mask, data and start weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fewshot_core import artifacts, data
from fewshot_core.settings import EvalSettings, TrainSettings
from fewshot_core.space import StandaloneNet, Supernet, architectures

MODES = ("single_path", "mixture")
Network = Supernet | StandaloneNet


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU when one is there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Progress:
    """Epoch lines to the log, and a one-line bar when the output is a terminal."""

    def __init__(self, total: int, label: str, stream=None) -> None:
        self.total, self.label, self.t0 = total, label, time.perf_counter()
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()

    def step(self, done: int, total: int) -> None:
        if self.tty:
            width = 30
            fill = int(width * done / max(total, 1))
            self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}")
            self.stream.flush()

    def epoch(self, epoch: int, loss: float, acc: float, images_per_s: float, start_epoch: int) -> None:
        elapsed = time.perf_counter() - self.t0
        done = epoch + 1 - start_epoch
        left = elapsed / max(done, 1) * (self.total - epoch - 1)
        if self.tty:
            self.stream.write("\r")
        print(f"{self.label} epoch {epoch + 1}/{self.total} loss {loss:.4f} acc {acc:.4f} "
              f"{images_per_s:.0f} img/s, {left:.0f}s left", file=self.stream, flush=True)


def state_digest(net: torch.nn.Module) -> str:
    """A hash of every parameter and buffer: names the weights a training run started from."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def describe(net: Network) -> dict:
    """The network's shape, and its mask (a supernet) or its architecture (a standalone network)."""
    shape = {"C": net.C, "N": net.N, "num_classes": net.num_classes, "input_size": net.input_size}
    if isinstance(net, Supernet):
        return {**shape, "mask": net.mask.astype(int).tolist()}
    return {**shape, "arch": net.arch}


def checkpoint_provenance(net: Network, d: data.ImageData, train_idx: np.ndarray, cfg: TrainSettings,
                          seed: int) -> dict:
    """Everything a training run's result depends on; a checkpoint is resumed only when this is equal."""
    return artifacts.provenance(
        "checkpoint", train=asdict(cfg), seed=seed, network=describe(net),
        data={"name": d.name, "input_size": d.input_size,
              "train_indices": hashlib.sha256(np.asarray(train_idx, dtype=np.int64).tobytes()).hexdigest()[:16]},
        start_weights=state_digest(net))


def training_steps(cfg: TrainSettings, n_train: int) -> int:
    """The optimisation steps of a whole training run on ``n_train`` images: a run's budget."""
    return cfg.epochs * math.ceil(n_train / cfg.batch_size)


def train(net: Network, d: data.ImageData, train_idx: np.ndarray, cfg: TrainSettings, seed: int,
          checkpoint: Path | None = None, device: torch.device | None = None, label: str = "train",
          on_epoch: Callable[[int], None] | None = None) -> list[dict]:
    """Train ``net`` (a supernet in ``cfg.mode``, or a standalone network) in place for ``cfg.epochs``
    epochs; returns one record per epoch run here, with the optimisation steps taken in it.

    ``checkpoint``: where to save after every epoch, and to resume from when it holds a run of the
    same settings, seed, supernet, mask, data and start weights (any other is discarded with a log
    line saying why). ``on_epoch`` is called after each checkpoint (tests use it to kill a job at a
    known point).
    """
    if cfg.mode not in MODES:
        raise ValueError(f"training mode must be one of {MODES}, got {cfg.mode!r}")
    device = device or torch.device("cpu")
    origin = checkpoint_provenance(net, d, train_idx, cfg, seed)
    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    o = cfg.optimizer
    opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=o.lr_min)
    # On a GPU the whole training part lives there (CIFAR-10's is 150 MB as uint8) and batches are drawn,
    # cropped and flipped there, from generators on the GPU seeded alike; on the CPU, as always.
    where = device if device.type == "cuda" else torch.device("cpu")
    gens = {"order": torch.Generator(device=where).manual_seed(seed),
            "augment": torch.Generator(device=where).manual_seed(seed + 1), "path": torch.Generator().manual_seed(seed + 2)}
    precision = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.mixed_precision and device.type == "cuda"
                 else contextlib.nullcontext())
    if isinstance(net, Supernet):
        net.mode = cfg.mode
        net.path_generator = gens["path"]
    start = 0
    state = None if checkpoint is None else artifacts.load_checkpoint(
        checkpoint, origin, log=lambda m: print(f"{label}: {m}", flush=True))
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for k, g in gens.items():
            g.set_state(state["rng"][k])
        start = state["epoch"] + 1
        print(f"{label}: resuming from {checkpoint} after epoch {start}", flush=True)
    x_all = d.train_x[torch.as_tensor(train_idx)].to(where)
    y_all = d.train_y[torch.as_tensor(train_idx)].to(where)
    progress = Progress(cfg.epochs, label)
    history = []
    steps = math.ceil(len(y_all) / cfg.batch_size)
    for epoch in range(start, cfg.epochs):
        net.train()
        t0, seen, taken = time.perf_counter(), 0, 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: one sync an epoch
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for i, (xb, yb) in enumerate(data.batches(x_all, y_all, cfg.batch_size, gens["order"])):
            if cfg.augment:
                xb = data.augment(xb, gens["augment"], flip=d.name != "digits", pad=cfg.crop_pad)
            x = data.normalize(xb.to(device), d)
            y = yb.to(device)
            opt.zero_grad(set_to_none=True)
            with precision:
                logits = net(x)
                loss = F.cross_entropy(logits, y)
            loss.backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
            opt.step()
            taken += 1
            seen += len(y)
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            progress.step(i + 1, steps)
        sched.step()
        rate = seen / (time.perf_counter() - t0)
        rec = {"epoch": epoch + 1, "loss": loss_sum.item() / seen, "accuracy": correct.item() / seen,
               "images_per_s": rate,
               "lr": opt.param_groups[0]["lr"], "steps": taken}
        history.append(rec)
        progress.epoch(epoch, rec["loss"], rec["accuracy"], rate, start)
        if checkpoint is not None:
            artifacts.save_checkpoint(checkpoint, {
                "epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": {k: g.get_state() for k, g in gens.items()}}, origin)
        if on_epoch is not None:
            on_epoch(epoch)
    return history


@torch.no_grad()
def recalibrate_bn(net: Supernet, arch: str, x: torch.Tensor, batch_size: int) -> None:
    """Reset every BN's running statistics and re-estimate them for ``arch`` on training images."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    net.train()
    for i in range(0, len(x), batch_size):
        net(x[i : i + batch_size], arch=arch)


def sample_architectures(mask: np.ndarray, n: int, seed: int) -> list[str]:
    """``n`` architectures of the mask drawn from ``seed`` (all of them when it holds fewer)."""
    pool = architectures(mask)
    picks = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[: min(n, len(pool))]
    return [pool[i] for i in picks.tolist()]


@torch.no_grad()
def validate(net: Network, x: torch.Tensor, y: torch.Tensor, batch_size: int, arch: str | None = None
             ) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on normalised images (eval mode; ``arch``: one of a supernet's)."""
    if len(y) == 0:
        raise data.DataError("the validation split is empty: nothing to evaluate on")
    net.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for j in range(0, len(y), batch_size):
        logits = net(x[j : j + batch_size], arch=arch) if arch is not None else net(x[j : j + batch_size])
        loss += F.cross_entropy(logits, y[j : j + batch_size], reduction="sum").double()
        correct += (logits.argmax(1) == y[j : j + batch_size]).sum()
    return correct.item() / len(y), loss.item() / len(y)


def validation_images(d: data.ImageData, val_idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised validation images of a holdout (the leaves' own evaluation)."""
    idx = torch.as_tensor(val_idx)
    return data.normalize(d.train_x[idx], d).to(device), d.train_y[idx].to(device)


def test_images(d: data.ImageData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised test part, which no training stage touches: every accuracy of the ranking study."""
    return data.normalize(d.test_x, d).to(device), d.test_y.to(device)


def calibration_indices(train_idx: np.ndarray, cfg: EvalSettings, seed: int) -> torch.Tensor:
    """The training images that re-estimate batch norm before each architecture is evaluated."""
    g = torch.Generator().manual_seed(seed)
    return torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=g)[: cfg.bn_batches * cfg.batch_size]]


@torch.no_grad()
def evaluate_architectures(net: Supernet, d: data.ImageData, train_idx: np.ndarray,
                           images: tuple[torch.Tensor, torch.Tensor], archs: list[str], cfg: EvalSettings, seed: int,
                           device: torch.device | None = None, prefix: str = "val") -> pd.DataFrame:
    """Evaluate each architecture of ``archs`` with the supernet's weights on ``images`` (normalised, on
    the device), BN statistics re-estimated for it on ``cfg.bn_batches`` training batches of
    ``cfg.batch_size`` (drawn from ``seed``); the supernet is left as it was. Columns: arch,
    ``<prefix>_accuracy``, ``<prefix>_loss``."""
    device = device or torch.device("cpu")
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    momenta = {m: m.momentum for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    x_cal = data.normalize(d.train_x[calibration_indices(train_idx, cfg, seed)], d).to(device)
    x_eval, y_eval = images
    rows = []
    try:
        for arch in archs:
            recalibrate_bn(net, arch, x_cal, cfg.batch_size)
            accuracy, loss = validate(net, x_eval, y_eval, cfg.batch_size, arch)
            rows.append({"arch": arch, f"{prefix}_accuracy": accuracy, f"{prefix}_loss": loss})
    finally:
        net.load_state_dict(saved)
        for m, mom in momenta.items():
            m.momentum = mom
    return pd.DataFrame(rows, columns=["arch", f"{prefix}_accuracy", f"{prefix}_loss"])
