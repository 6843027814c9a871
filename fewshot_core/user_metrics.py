"""The user's own metrics: a function in a file (``"my_metrics.py:score"``) or a module
(``"my_package.metrics:score"``) with the built-ins' signature, ``fn(model, batches, **settings)``.

Checked before any job without running the user's code: the file is parsed (:mod:`ast`) for a
top-level function of that name whose first two parameters take the model and the batches and whose
other parameters have defaults or are given in the configuration, and every module it imports must
be found. The check and the scoring job resolve names the same way: files and modules are looked up
in the folder the workflow runs in first (then among installed packages), and the metric file's own
folder is on the import path when it runs, so that it can import its siblings. Its code hash covers
the file and every module of the user's it imports, directly or not and whatever the import's form
(relative, a sibling, a module of the workflow's folder, or of the metric's own package), so editing
any of them reruns the metric's jobs. Each metric's modules are loaded apart from another's: two metrics
whose folders each hold a ``helper.py`` get their own.

In the job, whatever a call of the user's function raises (``SystemExit`` included) is a
:class:`MetricError` naming the metric, the exception and the line of the user's code it came from, and
a call longer than the time limit (``user_metric_time_limit``, which reaches the job through
``FEWSHOT_METRIC_TIME_LIMIT``: a limit changes no result) ends the same way (docs/design.md §9).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from fewshot_core.errors import ConfigError, MetricError, cut, shown

#: The environment variable that carries ``user_metric_time_limit`` (seconds per call) to the jobs.
TIME_LIMIT_VARIABLE = "FEWSHOT_METRIC_TIME_LIMIT"
#: Seconds after the limit at which a call that caught the limit's exception and went on ends its job.
GRACE = 2.0


def _local_module(name: str, folder: Path) -> Path | None:
    """The file of module ``name`` (dotted) under ``folder``, if it is there."""
    base = folder.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def source_file(function: str, workdir: str | os.PathLike = ".") -> tuple[Path, str]:
    """The file that defines ``function`` and the function's name in it: a file or module in ``workdir``
    first, else an installed module."""
    target, sep, attr = function.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ValueError(f"{shown(function)} is not 'file.py:function' or 'module:function'")
    if target.endswith(".py"):
        return Path(workdir, target), attr
    local = _local_module(target, Path(workdir))
    if local is not None:
        return local, attr
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as err:
        raise ValueError(f"module {shown(target)} is neither in {os.path.abspath(workdir)} nor installed ({err})") from err
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"module {shown(target)} is neither a file in {os.path.abspath(workdir)} nor an installed "
                         "Python module")
    return Path(spec.origin), attr


def _imports(tree: ast.Module) -> list[tuple[str, int]]:
    """(module, relative level) of every import in a parsed file."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(node.module or "", node.level)] + [(f"{node.module}.{a.name}" if node.module else a.name,
                                                         node.level) for a in node.names]
    return out


def _package_root(path: Path) -> tuple[Path, str] | None:
    """The folder holding the package ``path`` belongs to, and the package's name (None for a lone file)."""
    folder = path.parent
    if not (folder / "__init__.py").is_file():
        return None
    while (folder.parent / "__init__.py").is_file():
        folder = folder.parent
    return folder.parent, folder.name


def local_sources(path: Path, workdir: str | os.PathLike = ".") -> list[Path]:
    """``path`` and every module of the user's that it imports, directly or not: relative imports, and
    absolute ones found where the metric's import path finds them first (its own folder, the workflow's
    folder, the folder of its package, for that package's modules only); installed packages are not the
    user's."""
    found, todo, package = [], [path.resolve()], _package_root(path.resolve())
    while todo:
        p = todo.pop()
        if p in found:
            continue
        found.append(p)
        for name, level in _imports(ast.parse(p.read_text(), filename=str(p))):
            if not name:
                continue
            if level:
                folder = p.parent
                for _ in range(level - 1):
                    folder = folder.parent
                folders = [folder]
            else:
                folders = [path.parent, Path(workdir)]
                if package and name.split(".")[0] == package[1]:
                    folders.append(package[0])
            local = next((m for m in (_local_module(name, f) for f in folders) if m is not None), None)
            if local is not None:
                todo.append(local.resolve())
    return sorted(found)


def check(name: str, function: str, settings: dict, workdir: str | os.PathLike = ".") -> None:
    """:class:`ConfigError` naming ``metrics.<name>`` unless ``function`` exists with a usable signature
    and everything its file imports can be found."""
    key = f"metrics.{name}.function"
    try:
        path, attr = source_file(function, workdir)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from err
    if not path.is_file():
        raise ConfigError(f"{key}: the file {shown(str(path))} does not exist (paths are relative to the folder the "
                          "workflow runs in)")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {path} cannot be parsed as Python ({err})") from err
    for module, level in _imports(tree):
        top = module.split(".")[0]
        if level or not top or _local_module(top, path.parent) or _local_module(top, Path(workdir)):
            continue
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ConfigError(f"{key}: {path} imports {top!r}, which is neither beside it nor installed")
    try:
        local_sources(path, workdir)
    except (SyntaxError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {getattr(err, 'filename', None) or path}, which it imports, cannot be parsed as "
                          f"Python ({err})") from err
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == attr]
    if not defs:
        raise ConfigError(f"{key}: {path} defines no top-level function {shown(attr)}")
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


@contextlib.contextmanager
def _importable(*folders: Path) -> Iterator[None]:
    """``folders`` first on the import path while the user's code loads."""
    added = [str(f.resolve()) for f in folders]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            sys.path.remove(f)


def time_limit() -> float | None:
    """The seconds a call of a user's metric may take in this job (None: no limit, outside the workflow)."""
    value = os.environ.get(TIME_LIMIT_VARIABLE)
    return float(value) if value else None


def load(function: str, workdir: str | os.PathLike = ".", name: str | None = None, limit: float | None = None):
    """The user's function itself (runs the file's top-level code: only a scoring job calls this),
    resolved as :func:`check` resolved it. The modules of the user's it brings in are taken out of
    ``sys.modules`` once it is loaded, so that another metric's same-named modules load from its own folder;
    each call of the function runs with its own modules and folders back in place (an import inside it finds
    what its file's imports found), at most ``limit`` seconds, and what it raises is a :class:`MetricError`
    naming the metric (``name``, else ``function``), the exception and the user's line it came from."""
    path, attr = source_file(function, workdir)
    target = function.rpartition(":")[0]
    folders = (path.parent, Path(workdir))
    who = f"metric {name!r} (the user's {function})" if name else function
    with _own_modules(folders, {}) as own:
        try:
            with _importable(*folders):
                if not target.endswith(".py") and _local_module(target, Path(workdir)) is None:
                    module = importlib.import_module(target)
                else:
                    module_spec = importlib.util.spec_from_file_location(f"fewshot_user_metric_{path.stem}", path)
                    module = importlib.util.module_from_spec(module_spec)
                    module_spec.loader.exec_module(module)
            fn = getattr(module, attr)
        except (Exception, SystemExit) as err:  # the user's code, whatever it raises while it loads
            raise MetricError(f"{who}: loading it failed ({type(err).__name__}: {cut(err)}){_line(err, path, folders)}; run "
                              f"`python -c 'import {path.stem}'` in {path.parent} to see where") from err

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            with _own_modules(folders, own), _importable(*folders), _limited(limit, who) as clock:
                out = fn(*args, **kwargs)
            if clock.expired:  # the user's code caught the limit's exception and returned
                raise _TimeLimit
            return out
        except _TimeLimit as err:
            raise MetricError(f"{who} ran past its time limit of {limit:g} s per call (user_metric_time_limit: make "
                              f"it faster, or raise the limit){_line(err, path, folders)}") from None
        except (Exception, SystemExit) as err:
            raise MetricError(f"{who} {_raised(err)}{_line(err, path, folders)}") from err

    return call


class _TimeLimit(BaseException):
    """A call of the user's metric ran past its limit: a BaseException, so that the user's ``except
    Exception`` does not take it for its own."""


class _Clock:
    """Whether the limit of the call in progress has passed, and whether its alarm is still the call's."""

    expired = False
    armed = False


@contextlib.contextmanager
def _limited(limit: float | None, who: str) -> Iterator[_Clock]:
    """The body raises :class:`_TimeLimit` once ``limit`` seconds have passed, from a ``SIGALRM`` that the main
    thread's interpreter turns into the exception between two bytecodes (no thread to leave behind, nothing
    to kill); the alarm repeats every second, and should the body catch it each time, the job ends
    :data:`GRACE` seconds later with the same line. An enclosing alarm keeps what it had left."""
    clock = _Clock()
    if not limit or threading.current_thread() is not threading.main_thread():
        yield clock
        return
    start = time.monotonic()

    def expire(_signum, _frame) -> None:
        if not clock.armed:
            return
        clock.expired = True
        if time.monotonic() - start >= limit + GRACE:
            os.write(2, f"{who} ran past its time limit of {limit:g} s per call (user_metric_time_limit) and went "
                        "on after it: the job ends here\n".encode())
            os._exit(2)
        raise _TimeLimit

    clock.armed = True
    previous = signal.signal(signal.SIGALRM, expire)
    outer = signal.setitimer(signal.ITIMER_REAL, limit, 1.0)
    try:
        yield clock
    finally:
        clock.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if outer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer[0] - (time.monotonic() - start), 1e-3), outer[1])


def _raised(err: BaseException) -> str:
    """What the user's code did, as a message says it: the exception's type and its text, cut to a readable
    length, or the ``sys.exit`` it called."""
    if isinstance(err, SystemExit):
        return f"called sys.exit({cut(repr(err.code), 60)}) (a metric returns its value; it must not end the job)"
    text = str(err)
    return f"raised {type(err).__name__}" + (f" ({cut(text, 300)})" if text else "")


def _line(err: BaseException, path: Path, folders: tuple[Path, ...]) -> str:
    """Where in the user's code ``err`` was raised: the innermost frame in the folder of the metric's file
    ``path``, or under ``folders`` outside installed packages and this package (its file, line and
    function), else nothing."""
    own, package = path.resolve().parent, Path(__file__).resolve().parent
    roots = [f.resolve() for f in folders]
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        file = Path(frame.filename).resolve()
        theirs = any(file.is_relative_to(r) for r in roots) and not file.is_relative_to(package) and \
            not {"site-packages", "dist-packages"} & set(file.parts)
        if file.parent == own or theirs:
            return f" in {frame.filename}, line {frame.lineno}, in {frame.name}"
    return ""


@contextlib.contextmanager
def _own_modules(folders: tuple[Path, ...], own: dict) -> Iterator[dict]:
    """Put ``own`` (a metric's modules, by name) in ``sys.modules`` for the while, and on the way out take
    back out every module of the user's folders loaded meanwhile, keeping them in ``own``."""
    saved = {name: sys.modules.get(name) for name in own}
    before = set(sys.modules)
    sys.modules.update(own)
    try:
        yield own
    finally:
        for name in (set(sys.modules) - before) | set(own):
            module = sys.modules.get(name)
            if module is not None and name.split(".")[0] != "fewshot_core" and _is_users(module, folders):
                own[name] = sys.modules.pop(name)
        for name, module in saved.items():
            if module is not None:
                sys.modules[name] = module


def _is_users(module, folders: tuple[Path, ...]) -> bool:
    """True when ``module`` was loaded from one of ``folders`` (or below), not from an installed package."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    file = Path(file).resolve()
    installed = {"site-packages", "dist-packages"} & set(file.parts)
    return not installed and any(file.is_relative_to(f.resolve()) for f in folders)
