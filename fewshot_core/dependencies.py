"""Which package modules an output's content depends on, computed from the code, not listed by hand.

The stage function that makes an output (``stages.<rule>``) uses the modules it imports, those of the
helpers of ``stages.py`` it calls, and what ``stages.py`` imports at its top (loaded by every stage);
each of those modules uses every module it imports anywhere in its code, and so on. That closure, with
``stages`` itself (whose other stages' imports are not this stage's), is what an output's record names
(:func:`fewshot_core.outputs.code_version`), so an edit to any module a stage reaches is reported at the
next start for exactly the outputs of the stages that reach it. A catalogue metric's own module
(``metrics/saliency.py`` ...) is left out: its digest is in the scoring spec
(:func:`fewshot_core.catalog.code_hash`), so that editing it reruns that metric's jobs alone. Torch-free
and import-free: the code is read, never run.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PREFIX = "fewshot_core"
STAGES = "stages"


def module_file(module: str) -> Path:
    """``fewshot_core/<module>.py``, or the package's ``__init__.py`` (``metrics``)."""
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _exists(module: str) -> bool:
    return module_file(module).is_file()


def _named(node: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """``{local name: package module}`` for what an import statement brings from this package: a module
    itself, or a name defined in one (``from fewshot_core.tree import ROOT``: ROOT -> tree)."""
    out = {}
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith(f"{PREFIX}."):
                module = alias.name[len(PREFIX) + 1:]
                out[alias.asname or alias.name] = module
        return out
    if node.level or not node.module or not (node.module == PREFIX or node.module.startswith(f"{PREFIX}.")):
        return out
    base = node.module[len(PREFIX) + 1:]
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        out[alias.asname or alias.name] = sub if _exists(sub) else base
    return out


@cache
def _tree(module: str) -> ast.Module:
    path = module_file(module)
    return ast.parse(path.read_text(), filename=str(path))


@cache
def imports(module: str) -> frozenset[str]:
    """The package modules ``module`` imports anywhere in its code (at its top or inside functions)."""
    found = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(m for m in _named(node).values() if m)
    return frozenset(found)


@cache
def closure(modules: frozenset[str]) -> frozenset[str]:
    """``modules`` and every package module they import, directly or not (a submodule's package too:
    Python runs ``metrics/__init__.py`` before ``metrics/base.py``)."""
    found, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module not in found:
            found.add(module)
            todo += imports(module)
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


def used_by_stage(function: str) -> frozenset[str]:
    """The package modules the stage function ``stages.<function>`` uses directly: its own imports, the
    top-level package names of ``stages.py`` it mentions, and the same for the helpers of ``stages.py`` it
    calls (a name the function binds itself is its own, whatever module-level name it shadows)."""
    names, functions = _stage_scope()
    if function not in functions:
        raise KeyError(f"no stage function {function!r} in {module_file(STAGES)}")
    found, seen, todo = set(), set(), [function]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        local = _local_names(functions[name])
        for node in ast.walk(functions[name]):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(m for m in _named(node).values() if m)
            elif isinstance(node, ast.Name) and node.id not in local:
                if node.id in names and names[node.id]:
                    found.add(names[node.id])
                elif node.id in functions:
                    todo.append(node.id)
    return frozenset(found)


def _local_names(function: ast.FunctionDef) -> set[str]:
    """The names a function binds itself (parameters, assignments, loop and comprehension targets), which
    shadow the module's names of the same spelling."""
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
    """Every package module the content made by ``stages.<function>`` depends on, sorted."""
    top_level = frozenset(m for m in _stage_scope()[0].values() if m)  # loaded by every stage's process
    return tuple(sorted((closure(used_by_stage(function) | top_level) - metric_modules()) | {STAGES}))
