"""Which code an output's content depends on, computed from the code, not listed by hand.

An output's code is the function of ``stages.py`` that makes it, with the helpers of ``stages.py`` it
calls, and the science modules these reach: the package modules they import or name, and every science
module those import, directly or not. The machinery (:data:`MACHINERY`: records, catalogue, settings,
specs, command line, server) decides where and how a file is kept and checked, not what it holds, so it
is not followed: a file's format and columns are in its key (:func:`fewshot_core.outputs.key`). A
catalogue metric's own module is in its scoring spec (:func:`fewshot_core.settings.metric_code`), so that
editing it reruns that metric's jobs alone. Torch-free and import-free: the code is read, never run.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from fewshot_core import digests

PACKAGE = Path(__file__).resolve().parent
PREFIX = "fewshot_core"
STAGES = "stages"
#: The machinery: where files live, how they are written, checked and reported, how a run is configured and
#: started. It makes no content, so an edit to it reruns nothing (a stage's edit to its glue does), and the
#: science imports none of it (a test).
MACHINERY = frozenset({"artifacts", "checks", "cli", "dependencies", "digests", "freshness", "launch", "outputs",
                       "plan", "report", "server", "settings", "specs", STAGES})
#: Not followed either: the errors' messages, the tables' columns (each kind's are in its own key) and the
#: metric catalogue (names, settings' types and help: a metric's settings and the digest of its own module
#: are in its jobs' specs).
UNTRACKED = MACHINERY | {"catalog", "columns", "errors"}


def module_file(module: str) -> Path:
    """``fewshot_core/<module>.py``, or the package's ``__init__.py`` (``metrics``)."""
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _named(node: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """``{local name: package module}`` for what an import statement brings from this package: a module
    itself, or a name defined in one (``from fewshot_core.tree import ROOT``: ROOT -> tree)."""
    if isinstance(node, ast.Import):
        return {alias.asname or alias.name: alias.name[len(PREFIX) + 1:] for alias in node.names
                if alias.name.startswith(f"{PREFIX}.")}
    if node.level or not node.module or not (node.module == PREFIX or node.module.startswith(f"{PREFIX}.")):
        return {}
    base = node.module[len(PREFIX) + 1:]
    out = {}
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        out[alias.asname or alias.name] = sub if module_file(sub).is_file() else base
    return out


@cache
def _tree(module: str) -> ast.Module:
    path = module_file(module)
    return ast.parse(path.read_text(), filename=str(path))


@cache
def imports(module: str) -> frozenset[str]:
    """The package modules ``module`` imports anywhere in its code (at its top or inside functions)."""
    return frozenset(m for node in ast.walk(_tree(module)) if isinstance(node, (ast.Import, ast.ImportFrom))
                     for m in _named(node).values() if m)


@cache
def closure(modules: frozenset[str]) -> frozenset[str]:
    """The science modules among ``modules`` and every science module they import, directly or not (a
    submodule's package too: Python runs ``metrics/__init__.py`` before ``metrics/base.py``)."""
    found, todo = set(), [m for m in modules if m not in UNTRACKED]
    while todo:
        module = todo.pop()
        if module not in found:
            found.add(module)
            todo += [m for m in imports(module) if m not in UNTRACKED]
            todo += [module.rsplit(".", 1)[0]] if "." in module else []
    return frozenset(found)


@cache
def _stage_scope() -> tuple[dict[str, str], dict[str, ast.FunctionDef]]:
    """``stages.py``'s top-level imported names (-> module) and its functions by name."""
    names, functions = {}, {}
    for node in _tree(STAGES).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(_named(node))
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = node
    return names, functions


@cache
def _reach(function: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The package modules ``stages.<function>`` uses directly (its own imports and the top-level package
    names of ``stages.py`` it mentions, and the same for the helpers it calls), and those functions' names:
    a name the function binds itself is its own, whatever module-level name it shadows."""
    names, functions = _stage_scope()
    if function not in functions:
        raise KeyError(f"no stage function {function!r} in {module_file(STAGES)}")
    found, seen, todo = set(), [], [function]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        local = _local_names(functions[name])
        for node in ast.walk(functions[name]):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(m for m in _named(node).values() if m)
            elif isinstance(node, ast.Name) and node.id not in local:
                if names.get(node.id):
                    found.add(names[node.id])
                elif node.id in functions:
                    todo.append(node.id)
    return frozenset(found), tuple(sorted(seen))


def _local_names(function: ast.FunctionDef) -> set[str]:
    """The names a function binds itself (parameters, assignments, loop and comprehension targets)."""
    args = function.args
    bound = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    bound |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound


def metric_modules() -> frozenset[str]:
    """The catalogue metrics' own modules, whose digests the scoring specs carry."""
    from fewshot_core.catalog import CATALOG

    return frozenset(f"metrics.{m.module}" for m in CATALOG.values())


@cache
def stage_code(function: str) -> tuple[str, ...]:
    """Every science module the content made by ``stages.<function>`` depends on, sorted."""
    return tuple(sorted(closure(_reach(function)[0]) - metric_modules()))


@cache
def stage_digest(function: str) -> str:
    """The digest of ``stages.<function>`` and the helpers of ``stages.py`` it calls, as parsed (docstrings,
    comments and layout do not count): an edit to one stage's glue reruns that stage's outputs alone."""
    functions = _stage_scope()[1]
    return digests.short(digests.of_ast(functions[name]) for name in _reach(function)[1])
