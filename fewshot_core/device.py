"""The device a stage computes on, and the numerics it computes with there.

docs/design.md §10 ("Devices"): on a GPU every stage runs with float32 kept float32 (no TF32) and
cuDNN's deterministic kernels, so that a metric's value is the reference code's and a repeated GPU run
repeats; training may trade precision for speed only where the configuration says so
(``training.precision``). Every random draw is made on the CPU (:mod:`fewshot_core.train`), so the
device changes a result only by floating-point rounding.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

PRECISIONS = ("float32", "tf32", "bfloat16")

#: Images per forward pass when a GPU evaluates in eval mode (each image's logits are its own there, so
#: the batch changes no result beyond rounding; the CPU keeps the configured ``eval_batch_size``).
GPU_EVAL_BATCH = 2048


def resolve(name: str) -> torch.device:
    """``auto`` picks the GPU when one is there; the device's numerics are set as above."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(name)
    configure(device)
    return device


def configure(device: torch.device) -> None:
    """Float32 without TF32 and deterministic kernels on a GPU (a CPU's are left as they are: none applies).

    The cuBLAS workspace setting must precede the process's first cuBLAS call, so it is set here, before
    any tensor reaches the device; a value already in the environment is kept. An operation with no
    deterministic GPU kernel warns instead of failing. Uninitialised memory is not filled (the
    deterministic mode's default), which would cost a write of every new tensor."""
    if device.type != "cuda":
        return
    set_tf32(False)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matrix products and cuDNN's convolutions on a GPU, on or off, through torch's
    ``allow_tf32`` flags. Torch 2.9 added ``fp32_precision`` flags beside them, and its readers of the
    older flags (``cudnn.allow_tf32``, ``cudnn.flags()``, ``matmul.allow_tf32``,
    ``get_float32_matmul_precision()``: profilers, ``torch.compile``, a user's metric) raise RuntimeError
    once the newer ones were set alone; setting the older ones sets the newer ones to agree, so that
    either set reads without error (docs/design.md §10)."""
    with quiet():
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def tf32_enabled() -> bool:
    """Whether float32 convolutions or matrix products may run in TF32 now."""
    with quiet():
        return torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Torch 2.9's one-time notice that the ``allow_tf32`` flags will be deprecated, silenced: they are
    what keeps both sets of flags in agreement (:func:`set_tf32`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Please use the new API settings to control TF32")
        yield


@contextlib.contextmanager
def exact(device: torch.device) -> Iterator[None]:
    """TF32 off for the body on a GPU, the previous setting restored after: a metric's value is float32's
    whoever calls it (the workflow's stages have it off already, :func:`configure`)."""
    if device.type != "cuda":
        yield
        return
    with quiet():
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    set_tf32(False)
    try:
        yield
    finally:
        with quiet():
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def tf32(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 on for the body when a GPU trains with ``training.precision: tf32``; off again after."""
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "tf32" or device.type != "cuda":
        yield
        return
    set_tf32(True)
    try:
        yield
    finally:
        set_tf32(False)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass in bfloat16 when a GPU trains with ``training.precision: bfloat16``."""
    if precision == "bfloat16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (on the CPU) on ``device`` without stalling the host: on a GPU the copy goes from pinned
    memory, queued behind the work already launched (torch keeps the pinned buffer until it is done)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def read(t: torch.Tensor) -> list:
    """The values of a small tensor on the host: the one place a stage waits for the device (once per
    training epoch, once per evaluated set of architectures, once per metric value)."""
    return t.tolist()
