"""The project's digests: one hash, one length, one policy for code.

A digest names what made a file (a spec, an input file, a module's code, the weights a run started from)
in its provenance record: SHA-256, its first 16 hex digits. Code is digested as parsed and written back
(``ast.unparse``), docstrings, comments and layout left out, so that a change of prose reruns nothing; the
package's modules, the catalogue's metric sources and a user's metric files alike. Not ``ast.dump``, whose
text changes with Python's minor version (3.12 added fields), which would make every key another. Data files
are named by size, modification time and digest, and read again only when the first two change. Torch-free:
the workflow imports it while it parses.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

LENGTH = 16


def short(parts: bytes | str | Iterable[bytes | str]) -> str:
    """The digest of some bytes or text, or of a sequence of them taken in order."""
    h = hashlib.sha256()
    for part in (parts,) if isinstance(parts, (bytes, str)) else parts:
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()[:LENGTH]


def of_file(path: str | Path) -> str:
    """The digest of a file's bytes, read in blocks."""
    with open(path, "rb") as fh:
        return short(iter(lambda: fh.read(1 << 20), b""))


class _NoDocstrings(ast.NodeTransformer):
    """Drops docstrings, so that a module's digest changes with its code, not with its prose."""

    def _strip(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


def of_code(path: Path) -> str:
    """The digest of a Python file's code: comments, docstrings and layout do not count. The file is read
    each time; its parse is made once per content (the workflow digests each metric's sources for every
    scoring spec: 378 parses, 4 s of every start of the default run, before this)."""
    return _of_source(Path(path).read_text(), str(path))


@cache
def _of_source(source: str, filename: str) -> str:
    return short(ast.unparse(_NoDocstrings().visit(ast.parse(source, filename=filename))))


def of_ast(node: ast.AST) -> str:
    """The digest of one parsed function or class, as :func:`of_code` digests a file."""
    return short(ast.unparse(_NoDocstrings().visit(copy.deepcopy(node))))


@cache
def of_code_cached(path: Path) -> str:
    """:func:`of_code`, once per process (the package's own modules, which a run does not edit under a job)."""
    return of_code(path)


def of_sources(paths: Iterable[Path]) -> str:
    """The digest of several files' code, in the order given."""
    return short(of_code(p) for p in paths)


def of_files(paths: Iterable[str | Path]) -> str:
    """The digest of several files' bytes, in the order given (each read once per process for its size and
    time): what a run's data key names."""
    return short(_file_digest(str(p), (st := os.stat(p)).st_size, st.st_mtime_ns) for p in paths)


def of_data_files(paths: Iterable[str | Path]) -> dict[str, list]:
    """``{path: [size, mtime_ns, digest]}`` of the data files a result is made from: what its record keeps so
    that replaced data reruns what it feeds (:func:`changed_files`). A path inside the working folder (the
    workflow's: the project's data, its environment's copy of the digits) is kept relative to it, so that a
    project moved as a whole still finds its files."""
    out = {}
    for p in paths:
        st = os.stat(p)
        rel = os.path.relpath(os.path.abspath(p))
        out[os.path.abspath(p) if rel.startswith("..") else rel] = [st.st_size, st.st_mtime_ns,
                                                                    _file_digest(str(p), st.st_size, st.st_mtime_ns)]
    return out


def changed_files(recorded: dict[str, list], root: str | Path = ".") -> list[str]:
    """The recorded data files (:func:`of_data_files`; relative paths under ``root``) whose content is no
    longer the recorded one. A file of the recorded size and modification time counts as unchanged without
    being read (the check runs at every start); one whose size or time differs is read (once per process),
    and a copy of the same bytes is unchanged."""
    changed = []
    for path, (size, mtime_ns, digest) in recorded.items():
        full = os.path.join(root, path)
        try:
            st = os.stat(full)
        except OSError:
            changed.append(full)
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns) and (
                st.st_size != size or _file_digest(full, st.st_size, st.st_mtime_ns) != digest):
            changed.append(full)
    return changed


@cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """:func:`of_file`, once per process for a file of that size and time (CIFAR-10's batches are 180 MB)."""
    return of_file(path)
