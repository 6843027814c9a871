"""The user's own metrics: a function in a file (``"my_metrics.py:score"``) or a module
(``"my_package.metrics:score"``) with the built-ins' signature, ``fn(model, batches, **settings)``.

Checked before any job without running the user's code: the file is parsed (:mod:`ast`) for a
top-level function of that name whose first two parameters take the model and the batches and whose
other parameters have defaults or are given in the configuration. Loaded only by the scoring jobs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from pathlib import Path

from fewshot_core.errors import ConfigError


def source_file(function: str, workdir: str | os.PathLike = ".") -> tuple[Path, str]:
    """The file that defines ``function`` and the function's name in it."""
    target, sep, attr = function.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ValueError(f"{function!r} is not 'file.py:function' or 'module:function'")
    if target.endswith(".py"):
        return Path(workdir, target), attr
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as err:
        raise ValueError(f"module {target!r} cannot be found ({err})") from err
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"module {target!r} cannot be found as a Python source file")
    return Path(spec.origin), attr


def check(name: str, function: str, settings: dict, workdir: str | os.PathLike = ".") -> None:
    """:class:`ConfigError` naming ``metrics.<name>`` unless ``function`` exists with a usable signature."""
    key = f"metrics.{name}.function"
    try:
        path, attr = source_file(function, workdir)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from err
    if not path.is_file():
        raise ConfigError(f"{key}: the file {str(path)!r} does not exist (paths are relative to the folder the "
                          "workflow runs in)")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {path} cannot be parsed as Python ({err})") from err
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == attr]
    if not defs:
        raise ConfigError(f"{key}: {path} defines no top-level function {attr!r}")
    args = defs[-1].args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if len(positional) < 2 and args.vararg is None:
        raise ConfigError(f"{key}: {attr}({', '.join(positional)}) must take (model, batches, **settings): the "
                          "network and a list of batches, as the built-in metrics do")
    with_defaults = positional[len(positional) - len(args.defaults):] if args.defaults else []
    optional = set(with_defaults) | {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None}
    accepted = set(positional[2:]) | {a.arg for a in args.kwonlyargs}
    missing = [p for p in [*positional[2:], *(a.arg for a in args.kwonlyargs)] if p not in optional and p not in settings]
    unknown = [s for s in settings if s not in accepted and args.kwarg is None]
    if missing:
        raise ConfigError(f"{key}: {attr} needs {missing}: give them under metrics.{name}.settings or defaults in "
                          "the function")
    if unknown:
        raise ConfigError(f"metrics.{name}.settings: {attr} takes no {unknown}")


def code_hash(function: str, workdir: str | os.PathLike = ".") -> str:
    """A hash of the file that defines ``function``: editing it reruns the jobs of that metric."""
    path, _ = source_file(function, workdir)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load(function: str):
    """The user's function itself (runs the file's top-level code: only a scoring job calls this)."""
    target, _, attr = function.rpartition(":")
    if not target.endswith(".py"):
        return getattr(importlib.import_module(target), attr)
    path, _ = source_file(function)
    module_spec = importlib.util.spec_from_file_location(f"fewshot_user_metric_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)
