"""Training a (sub-)supernet, resumable and deterministic, and evaluating the architectures of a leaf.

docs/design.md §4: SGD (momentum 0.9, Nesterov), lr 0.025 cosine to 0.001, weight decay 5e-4, gradient
clipping 5 (GM-NAS); every figure comes from :class:`~fewshot_core.settings.TrainSettings`. The job
checkpoints at an epoch's end at most once a minute, and after its last epoch (model, optimizer, scheduler,
every random generator, epoch); a restarted job resumes from its last checkpoint, and ends bit-identical to
an uninterrupted run on the CPU,
only when the checkpoint was made for the same output (its key: settings and code) from the same origin
(settings, seed, supernet, mask, data and start weights).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fewshot_core import data
from fewshot_core import device as devices
from fewshot_core.space import SearchCell, StandaloneNet, Supernet, architectures

if TYPE_CHECKING:
    from fewshot_core.settings import EvalSettings, TrainSettings

MODES = ("single_path", "mixture")
Network = Supernet | StandaloneNet


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


def origin(net: Network, d: data.ImageData, train_idx: np.ndarray, cfg: TrainSettings, seed: int) -> dict:
    """Where a training run starts, as plain JSON data: its settings, seed, network, data and start weights.
    A checkpoint is resumed only when its origin is this one."""
    indices = hashlib.sha256(np.asarray(train_idx, dtype=np.int64).tobytes()).hexdigest()[:16]
    return json.loads(json.dumps({
        "train": asdict(cfg), "seed": seed, "network": describe(net), "draws": DRAWS, "start_weights": state_digest(net),
        "data": {"name": d.name, "input_size": d.input_size, "train_indices": indices}}, sort_keys=True))


class Checkpoints(Protocol):
    """Where a training run saves its state and resumes from (:class:`fewshot_core.artifacts.Checkpoints`)."""

    path: Path

    def load(self, origin: dict, log: Callable[[str], None]) -> dict | None: ...

    def save(self, state: dict, origin: dict) -> None: ...


#: Where a training run draws its random numbers (a checkpoint of another layout is not resumed): every
#: generator on the CPU, whatever the device, so that a seed draws the same batches, crops, flips and paths
#: on a GPU, and a checkpoint resumes on either device.
DRAWS = "cpu generators: order, augment, path"


#: The least time between two checkpoints of a training run, in seconds. Each copies the model's and
#: the optimiser's state from the device to the host and writes it to disk (with an fsync): a stall that an
#: epoch of a second or two should not pay every epoch, while a killed job loses at most a minute of training.
#: The last epoch is always checkpointed (a job training several leaves then resumes past the finished ones).
CHECKPOINT_SECONDS = 60.0


def training_steps(cfg: TrainSettings, n_train: int) -> int:
    """The optimisation steps of a whole training run on ``n_train`` images: a run's budget."""
    return cfg.epochs * math.ceil(n_train / cfg.batch_size)


def train(net: Network, d: data.ImageData, train_idx: np.ndarray, cfg: TrainSettings, seed: int,
          checkpoint: Checkpoints | None = None, device: torch.device | None = None, label: str = "train",
          on_epoch: Callable[[int], None] | None = None) -> list[dict]:
    """Train ``net`` (a supernet in ``cfg.mode``, or a standalone network) in place for ``cfg.epochs``
    epochs; returns one record per epoch run here, with the optimisation steps taken in it.

    ``checkpoint``: where to save at the end of an epoch once :data:`CHECKPOINT_SECONDS` have passed since
    the last save (or the start), and after the last epoch; and to resume from when it holds a run of the
    same output and :func:`origin` (any other is discarded with a log line saying why), made on any
    device. ``on_epoch`` is called at the end of each epoch, after its checkpoint if one was written (tests
    use it to kill a job at a known point). The host waits for the device once per epoch, to read its loss.
    """
    if cfg.mode not in MODES:
        raise ValueError(f"training mode must be one of {MODES}, got {cfg.mode!r}")
    device = device or torch.device("cpu")
    start_from = origin(net, d, train_idx, cfg, seed)
    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    o = cfg.optimizer
    opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=o.lr_min)
    gens = {"order": torch.Generator().manual_seed(seed), "augment": torch.Generator().manual_seed(seed + 1),
            "path": torch.Generator().manual_seed(seed + 2)}
    if isinstance(net, Supernet):
        net.mode = cfg.mode
        net.path_generator = gens["path"]
    start = 0
    state = None if checkpoint is None else checkpoint.load(start_from, lambda m: print(f"{label}: {m}", flush=True))
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for k, g in gens.items():
            g.set_state(state["rng"][k])
        start = state["epoch"] + 1
        moved = f" (made on {state['device']})" if state.get("device", str(device)) != str(device) else ""
        print(f"{label}: resuming from {checkpoint.path} after epoch {start}{moved}", flush=True)
    # The whole training part lives on the device (CIFAR-10's is 150 MB as uint8); batches are taken,
    # cropped and flipped there, by the epoch's draws made on the CPU and copied over once.
    x_all = d.train_x[torch.as_tensor(train_idx)].to(device)
    y_all = d.train_y[torch.as_tensor(train_idx)].to(device)
    progress = Progress(cfg.epochs, label)
    history = []
    saved_at = time.perf_counter()
    with devices.tf32(cfg.precision, device):
        for epoch in range(start, cfg.epochs):
            net.train()
            t0 = time.perf_counter()
            draws = data.draw_epoch(len(y_all), cfg.batch_size, gens["order"], gens["augment"] if cfg.augment else None,
                                    flip=d.name not in UNFLIPPED, pad=cfg.crop_pad)
            totals, taken = train_epoch(net, opt, params, d, x_all, y_all, draws.to(device), cfg, device, progress)
            sched.step()
            loss_sum, correct = devices.read(totals)
            seen = len(y_all)
            rate = seen / (time.perf_counter() - t0)
            rec = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen, "images_per_s": rate,
                   "lr": opt.param_groups[0]["lr"], "steps": taken}
            history.append(rec)
            progress.epoch(epoch, rec["loss"], rec["accuracy"], rate, start)
            if checkpoint is not None and (epoch + 1 == cfg.epochs or time.perf_counter() - saved_at >= CHECKPOINT_SECONDS):
                checkpoint.save({
                    "epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(), "device": str(device),
                    "scheduler": sched.state_dict(), "rng": {k: g.get_state() for k, g in gens.items()}}, start_from)
                saved_at = time.perf_counter()
            if on_epoch is not None:
                on_epoch(epoch)
    return history


#: Datasets whose images must not be mirrored (a mirrored digit is another symbol or none).
UNFLIPPED = ("digits",)


def train_epoch(net: Network, opt: torch.optim.Optimizer, params: list[torch.Tensor], d: data.ImageData,
                x_all: torch.Tensor, y_all: torch.Tensor, draws: data.Epoch, cfg: TrainSettings,
                device: torch.device, progress: Progress | None = None) -> tuple[torch.Tensor, int]:
    """One epoch over ``x_all`` in the order and with the augmentation of ``draws`` (all on the device);
    returns the summed loss and the correct predictions as one tensor on the device, unread (nothing in
    the epoch waits for the device), and the steps taken."""
    n = len(y_all)
    steps = math.ceil(n / cfg.batch_size)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, correct predictions
    o = cfg.optimizer
    for i, first in enumerate(range(0, n, cfg.batch_size)):
        part = slice(first, first + cfg.batch_size)
        idx = draws.order[part]
        xb, y = x_all[idx], y_all[idx]
        if draws.augment is not None:
            a = draws.augment
            xb = data.crop_flip(xb, a.dx[part], a.dy[part], None if a.flips is None else a.flips[part], cfg.crop_pad)
        x = data.normalize(xb, d)
        opt.zero_grad(set_to_none=True)
        with devices.autocast(cfg.precision, device):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        with torch.no_grad():
            totals += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()])
        if progress is not None:
            progress.step(i + 1, steps)
    return totals, steps


@torch.no_grad()
def recalibrate_bn(net: Supernet, arch: str, x: torch.Tensor, batch_size: int) -> None:
    """Reset every BN's running statistics and re-estimate them for ``arch`` on training images: their
    cumulative average over the batches, the k-th batch weighted 1/k (what ``momentum=None`` computes,
    without reading each module's batch count back from the device)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    cells = [m for m in net.modules() if isinstance(m, SearchCell)]
    for m in bns:
        m.reset_running_stats()
    net.train()
    try:
        for cell in cells:
            cell.separate_bn = True
        for k, i in enumerate(range(0, len(x), batch_size), start=1):
            for m in bns:
                m.momentum = 1.0 / k
            net(x[i : i + batch_size], arch=arch)
    finally:
        for cell in cells:
            cell.separate_bn = False


def sample_architectures(mask: np.ndarray, n: int, seed: int) -> list[str]:
    """``n`` architectures of the mask drawn from ``seed`` (all of them when it holds fewer)."""
    pool = architectures(mask)
    picks = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[: min(n, len(pool))]
    return [pool[i] for i in picks.tolist()]


def eval_batch(batch_size: int, device: torch.device) -> int:
    """Images per forward pass in eval mode: the configured size on the CPU, at least
    :data:`~fewshot_core.device.GPU_EVAL_BATCH` on a GPU (a result is per image in eval mode)."""
    return max(batch_size, devices.GPU_EVAL_BATCH) if device.type == "cuda" else batch_size


@torch.no_grad()
def totals(net: Network, x: torch.Tensor, y: torch.Tensor, batch_size: int, arch: str | None = None) -> torch.Tensor:
    """Correct predictions and summed cross-entropy on normalised images (eval mode; ``arch``: one of a
    supernet's), as one float64 tensor left on the device."""
    if len(y) == 0:
        raise data.DataError("the validation split is empty: nothing to evaluate on")
    net.eval()
    out = torch.zeros(2, dtype=torch.float64, device=x.device)
    for j in range(0, len(y), batch_size):
        logits = net(x[j : j + batch_size], arch=arch) if arch is not None else net(x[j : j + batch_size])
        target = y[j : j + batch_size]
        out += torch.stack([(logits.argmax(1) == target).sum().double(),
                            F.cross_entropy(logits, target, reduction="sum").double()])
    return out


def validate(net: Network, x: torch.Tensor, y: torch.Tensor, batch_size: int, arch: str | None = None
             ) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on normalised images (eval mode; ``arch``: one of a supernet's);
    ``batch_size`` images per forward pass on the CPU, more on a GPU (:func:`eval_batch`)."""
    correct, loss = devices.read(totals(net, x, y, eval_batch(batch_size, x.device), arch))
    return correct / len(y), loss / len(y)


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
    ``<prefix>_accuracy``, ``<prefix>_loss``. The host reads the device once, after the last architecture."""
    device = device or torch.device("cpu")
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    momenta = {m: m.momentum for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    x_cal = data.normalize(d.train_x[calibration_indices(train_idx, cfg, seed)], d).to(device)
    x_eval, y_eval = images
    chunk = eval_batch(cfg.batch_size, device)
    found = []
    try:
        for arch in archs:
            recalibrate_bn(net, arch, x_cal, cfg.batch_size)
            found.append(totals(net, x_eval, y_eval, chunk, arch))
    finally:
        net.load_state_dict(saved)
        for m, mom in momenta.items():
            m.momentum = mom
    values = devices.read(torch.stack(found)) if found else []
    rows = [{"arch": arch, f"{prefix}_accuracy": correct / len(y_eval), f"{prefix}_loss": loss / len(y_eval)}
            for arch, (correct, loss) in zip(archs, values)]
    return pd.DataFrame(rows, columns=["arch", f"{prefix}_accuracy", f"{prefix}_loss"])
