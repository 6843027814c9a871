"""The metric registry, the guard that leaves a scored model as the caller gave it, and the one that
gives every metric call the network and the process as the call before it found them."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as torch_module

from fewshot_core.catalog import Kind, MetricInfo, Setting, info
from fewshot_core.device import read
from fewshot_core.errors import MetricError, cut


@dataclass(frozen=True)
class Batch:
    """Inputs and integer targets of one scoring batch."""

    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True)
class Metric:
    """A metric of the catalogue bound to the code that computes it.

    ``compute(model, batches, **settings)`` returns a float (scalar metrics) or a (R, D) tensor of
    R vectors (vector metrics). ``prepare(model, batches, **settings)`` does the work shared by every
    variant of a split once and returns the (model, batches) that ``compute`` then sees; a prepared
    model that is not the caller's is the metric's own copy.
    """

    info: MetricInfo
    compute: Callable[..., float | torch.Tensor] | None  # None: no values (the random baseline)
    citation: str
    prepare: Callable[..., tuple[nn.Module, list[Batch]]] | None = None
    prepare_settings: tuple[str, ...] = ()  # the settings that go to prepare(), not compute()
    needs_edge: bool = False  # compute() takes ``edge=`` (gm_nas excludes the split edge's modules)
    seeded: bool = False  # prepare() takes ``seed=``: everything the metric draws at random comes from it

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kind(self) -> Kind:
        return self.info.kind

    @property
    def defaults(self) -> dict:
        return self.info.defaults


REGISTRY: dict[str, Metric] = {}


def register(name: str, compute: Callable[..., float | torch.Tensor] | None, citation: str,
             **options) -> Metric:
    """Bind the catalogue entry ``name`` to ``compute`` (and ``prepare``, ... in ``options``)."""
    if name in REGISTRY:
        raise ValueError(f"metric {name!r} registered twice")
    REGISTRY[name] = Metric(info(name), compute, citation, **options)
    return REGISTRY[name]


def register_user(name: str, function: str, kind: Kind) -> Metric:
    """Register the user's ``function`` (``"file.py:name"``) as the metric ``name``: its settings are
    the function's own keyword parameters, passed from the configuration as they are; each call is limited
    to the job's time limit (:func:`fewshot_core.user_metrics.time_limit`) and its failures name it."""
    import inspect

    from fewshot_core import user_metrics

    who = f"metric {name!r} (the user's {function})"
    with isolated(who, None, [], body="loading it"):  # its file's top-level code: torch's settings, a folder
        fn = user_metrics.load(function, name=name, limit=user_metrics.time_limit())
    params = list(inspect.signature(fn).parameters.values())[2:]
    settings = {p.name: Setting(None if p.default is p.empty else p.default, object, "the user's") for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    REGISTRY[name] = Metric(MetricInfo(name, name, kind, "user", function, settings), fn, f"the user's {function}")
    return REGISTRY[name]


def get(name: str) -> Metric:
    if name not in REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Conv2d and Linear modules, the layers the pruning-based metrics sum over."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class Snapshot:
    """A module's weights, buffers, gradients, requires_grad flags and train/eval modes, to put back.

    Metrics run BN in train mode (updating running statistics), flip signs or accumulate gradients,
    and a metric of the user's may take an optimiser step: :meth:`restore` undoes all of it in place
    (one copy per tensor, no new module), so that every call sees the state the snapshot saw.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.tensors = [(v, v.detach().clone()) for v in model.state_dict(keep_vars=True).values()]
        self.params = [(p, None if p.grad is None else p.grad.detach().clone(), p.requires_grad)
                       for p in model.parameters()]
        self.modes = [(m, m.training) for m in model.modules()]

    @torch.no_grad()
    def restore(self) -> None:
        for live, saved in self.tensors:
            live.copy_(saved)
        for p, grad, flag in self.params:
            p.requires_grad_(flag)
            p.grad = None if grad is None else grad.clone()
        for m, training in self.modes:
            m.training = training


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[Snapshot]:
    """Restore weights, buffers, gradients, requires_grad and train/eval modes on exit; the snapshot
    is given to the body, which may restore it as often as it likes (before each variant)."""
    snapshot = Snapshot(model)
    try:
        yield snapshot
    finally:
        snapshot.restore()


def layer_sum(values: list[torch.Tensor]) -> float:
    """The sum of per-layer values (0-d tensors) read back in one copy, added in layer order in double
    precision: the value summing each ``.item()`` gives, with one wait for the device instead of one per layer."""
    return float(sum(read(torch.stack(values).double()))) if values else 0.0


def finite(name: str, value: float) -> float:
    """``value`` if finite, else a :class:`MetricError` naming the metric."""
    if value != value or value in (float("inf"), float("-inf")):
        raise MetricError(f"metric {name!r} produced a non-finite value ({value})")
    return float(value)


#: A module's hook tables (torch.nn.Module's attributes) and what each holds; a table named None is the
#: companion of another (the same handles, with other flags), restored with it and not counted twice.
MODULE_HOOKS = {"_forward_pre_hooks": "forward pre-hook", "_forward_pre_hooks_with_kwargs": None,
                "_forward_hooks": "forward hook", "_forward_hooks_with_kwargs": None,
                "_forward_hooks_always_called": None, "_backward_pre_hooks": "backward pre-hook",
                "_backward_hooks": "backward hook", "_state_dict_pre_hooks": "state-dict hook",
                "_state_dict_hooks": "state-dict hook", "_load_state_dict_pre_hooks": "state-dict hook",
                "_load_state_dict_post_hooks": "state-dict hook"}
#: The tables of the hooks torch calls for every module (``register_module_forward_hook``, ...,
#: ``register_module_parameter_registration_hook``); the ``_with_kwargs`` and ``_always_called`` tables are
#: companions of the forward hooks'.
GLOBAL_HOOKS = {name: not name.endswith(("_with_kwargs", "_always_called")) for name, table in vars(torch_module).items()
                if name.startswith("_global_") and isinstance(table, dict)}
#: A tensor's hook tables (``register_hook``, ``register_post_accumulate_grad_hook``).
TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")


def _fp32() -> tuple[str, str, str]:
    return (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
            torch.backends.cudnn.rnn.fp32_precision)


def _set_fp32(value: tuple[str, str, str]) -> None:
    (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
     torch.backends.cudnn.rnn.fp32_precision) = value


def _cudnn() -> tuple[bool, bool]:
    return torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic


def _set_cudnn(value: tuple[bool, bool]) -> None:
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = value


def _cwd() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:  # the call removed the folder it was in
        return "(a removed folder)"


#: What of the process a call could leave changed for the next one: how to read it and to set it back.
PROCESS: dict[str, tuple[Callable[[], object], Callable[[object], object]]] = {
    "grad mode": (torch.is_grad_enabled, torch.set_grad_enabled),
    "default dtype": (torch.get_default_dtype, torch.set_default_dtype),
    "default device": (torch.get_default_device,
                       lambda d: torch.set_default_device(None if d == torch.device("cpu") else d)),
    "torch threads": (torch.get_num_threads, torch.set_num_threads),
    "working folder": (_cwd, os.chdir),
    "anomaly detection": (torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    "deterministic algorithms": (
        lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1])),
    "float32 precision (TF32)": (_fp32, _set_fp32),
    "cuDNN benchmark/deterministic": (_cudnn, _set_cudnn),
}


def _random_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()


def _set_random_state(state: tuple) -> None:
    cpu, cuda, numpy_state, python_state = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def _structure(modules: list[nn.Module]) -> list[tuple[int, ...]]:
    """The identity of each of ``modules`` and of its children, parameters and buffers: a call that replaces
    one leaves the tensors put back before each call outside the network."""
    return [(id(m), *map(id, m._modules.values()), *map(id, m._parameters.values()), *map(id, m._buffers.values()))
            for m in modules]


def _changed_part(model: nn.Module, before: list[nn.Module]) -> str:
    """The name of a part of ``model`` that is not where it was among ``before``'s (for the message)."""
    known = {id(m) for m in before}
    for name, m in model.named_modules(remove_duplicate=False):
        if id(m) not in known:
            return f"module {name}"
    old = {id(t) for m in before for t in (*m._parameters.values(), *m._buffers.values())}
    for name, t in (*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)):
        if id(t) not in old:
            return f"tensor {name}"
    return "a module, parameter or buffer removed"


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


class CallState:
    """What a metric call finds and could leave changed for the calls after it: the hooks of the network's
    modules, of its tensors and torch's global ones, the process's torch settings, working folder and
    random generators (torch's, numpy's and Python's), the network's modules and tensors, the batches.

    :meth:`settle` puts back what can be put back exactly (every hook table, every setting, the
    generators: each call starts from the generators' state at the first, so every variant draws the same
    numbers) and says which of those the call had changed, other than the generators, which a metric
    may draw from; a network whose modules or tensors were replaced, or batches changed in place, cannot be
    put back from here, and is a :class:`MetricError`."""

    def __init__(self, model: nn.Module | None, batches: list) -> None:
        self.model, self.batches = model, batches
        self.modules = [] if model is None else list(model.modules())
        self.hooks = [(m, kind, table, tuple(table.items()) if table else ()) for m in self.modules
                      for name, kind in MODULE_HOOKS.items() if (table := vars(m).get(name)) is not None]
        self.full_backward = [vars(m).get("_is_full_backward_hook") for m in self.modules]
        self.globals = {name: dict(getattr(torch_module, name)) for name in GLOBAL_HOOKS}
        self.global_full_backward = getattr(torch_module, "_global_is_full_backward_hook", None)
        self.tensors = [t for m in self.modules for t in (*m._parameters.values(), *m._buffers.values())
                        if t is not None]
        self.tensor_hooks = {(id(t), name): dict(table) for t in self.tensors for name in TENSOR_HOOKS
                             if (table := getattr(t, name, None))}
        self.process = {name: get() for name, (get, _) in PROCESS.items()}
        self.random = _random_state()
        self.structure = _structure(self.modules)
        self.versions = self._versions()

    def _versions(self) -> list[tuple[str, int]]:
        return [(f"batch {i}'s {part}", getattr(getattr(b, part), "_version", 0))
                for i, b in enumerate(self.batches) for part in ("inputs", "targets") if hasattr(b, part)]

    def settle(self) -> tuple[list[tuple[str, str]], list[str]]:
        """Put back what the call changed: (what was put back, as (what, how it changed); what could not be)."""
        undone = self._hooks() + self._process()
        _set_random_state(self.random)
        broken = []
        if _structure(self.modules) != self.structure:
            broken.append(f"replaced, added or removed a part of the network ({_changed_part(self.model, self.modules)}):"
                          " the weights put back before each call are no longer the network's. Change a copy "
                          "(copy.deepcopy(model)), never the network's modules or tensors themselves")
        versions = self._versions()
        if versions != self.versions:
            part = next(a[0] for a, b in zip(versions, self.versions) if a != b)
            broken.append(f"changed {part} in place: every call must see the same images; change a copy "
                          "(x = batch.inputs.clone())")
        return undone, broken

    def _hooks(self) -> list[tuple[str, str]]:
        counts: dict[str, int] = {}
        where: list[nn.Module] = []
        for m, kind, table, saved in self.hooks:
            if len(table) != len(saved) or (saved and list(table) != [key for key, _ in saved]):
                if kind:
                    counts[kind] = counts.get(kind, 0) + len(table.keys() ^ {key for key, _ in saved})
                    where.append(m)
                table.clear()
                table.update(saved)
        for m, full in zip(self.modules, self.full_backward):
            if vars(m).get("_is_full_backward_hook") != full:
                m._is_full_backward_hook = full
        torch_hooks = 0
        for name, saved in self.globals.items():
            table = getattr(torch_module, name)
            if table.keys() != saved.keys():
                torch_hooks += len(table.keys() ^ saved.keys()) if GLOBAL_HOOKS[name] else 0
                table.clear()
                table.update(saved)
        torch_module._global_is_full_backward_hook = self.global_full_backward
        tensor_hooks = 0
        for t in self.tensors:
            for name in TENSOR_HOOKS:
                table, saved = getattr(t, name, None), self.tensor_hooks.get((id(t), name), {})
                if table is not None and table.keys() != saved.keys():
                    tensor_hooks += len(table.keys() ^ saved.keys())
                    table.clear()
                    table.update(saved)
        said = []
        if counts:
            names = {id(m): n or "(the network)" for n, m in self.model.named_modules(remove_duplicate=False)}
            more = len({id(m) for m in where}) - 1
            said.append(("module hooks", f"{', '.join(_plural(n, k) for k, n in counts.items())} added or removed on "
                         f"{names.get(id(where[0]), '?')}" + (f" and {_plural(more, 'other module')}" if more else "")))
        if tensor_hooks:
            said.append(("tensor hooks", f"{_plural(tensor_hooks, 'hook')} added or removed on the network's tensors"))
        if torch_hooks:
            said.append(("global hooks", f"{_plural(torch_hooks, 'global module hook')} added or removed"))
        return said

    def _process(self) -> list[tuple[str, str]]:
        said = []
        for name, saved in self.process.items():
            get, put = PROCESS[name]
            now = get()
            if now != saved:
                put(saved)
                said.append((name, f"{name} {cut(saved, 60)} -> {cut(now, 60)}"))
        return said


#: (metric, what it changed) already said in this process: each is said once, not once per call.
_SAID: set[tuple[str, str]] = set()


@contextlib.contextmanager
def isolated(who: str, model: nn.Module | None, batches: list, where: str = "",
             say: Callable[[str], None] | None = None, body: str = "its call") -> Iterator[None]:
    """The body (``body``: one call of the metric ``who`` names) leaves the next call the network and the
    process as it found them (:class:`CallState`; the process alone without a ``model``): what it changed is
    put back, and said once per metric with ``say`` (standard error by default); what cannot be put back is
    a :class:`MetricError`."""
    state = CallState(model, batches)
    try:
        yield
    except BaseException:
        state.settle()
        raise
    undone, broken = state.settle()
    at = f" at {where}" if where else ""
    if broken:
        raise MetricError(f"{who} {broken[0]}{at}")
    if undone:
        key = (who, ", ".join(what for what, _ in undone))
        if key not in _SAID:
            _SAID.add(key)
            (say or _stderr)(f"{who} left changed after {body}{at}: {'; '.join(how for _, how in undone)}. Put back, so "
                             "that every metric's call starts from the same state; a metric should leave things as "
                             "it found them (remove each hook's handle, change settings in a with block)")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
