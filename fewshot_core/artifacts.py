"""Every file the workflow writes or reads: atomic writes, provenance, tables, JSON, weights, checkpoints.

Each artifact carries a provenance record (:func:`record`): its kind, run and identity (metric,
seed, level or chunk), the digest of the spec that made it and the spec itself, the digests of the
package modules its content depends on, the digest of its own content (``content``, added by the
writer) and, under ``read``, the content digest of every input file it was made from. Every reader
states what it expects (:func:`expect`: kind, run, identity and spec digest) and
:func:`check_provenance` compares, and checks that no input has changed since, so a file copied to
the wrong place, left by other settings or made from inputs since remade is an error naming the
file, the field, both values and the remedy. :func:`read_record` reads a record alone, without the
data and without torch, for the workflow's start-up check. Weight files are a zip holding the
record beside the tensors, which are read with ``weights_only=True``: no file can run code when loaded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot_core import digests
from fewshot_core.errors import ArtifactError
from fewshot_core.outputs import OUTPUTS, Output, code_version
from fewshot_core.settings import digest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PROVENANCE_KEY = b"fewshot.provenance"
CONTENT = "content"  # the record's field holding the digest of the file's content (the record aside)
WEIGHTS_FORMAT = "fewshot-weights/2"
CHECKPOINT_FORMAT = "fewshot-checkpoint/2"
REMEDY = "delete it and rerun the workflow, which remakes it"


# ----------------------------------------------------------------------------- writing and digests


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, fsync it, then rename it into place.

    The temporary file is created anew (``O_EXCL | O_NOFOLLOW``: never through a link planted at its
    name) and the rename replaces a link at ``path`` rather than writing through it. It is removed on any
    exception, SIGTERM and SIGINT included (the command line turns both into exceptions), so a killed job
    leaves neither a partial file nor a stray one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.is_file() and not tmp.is_symlink():
        tmp.unlink()  # left by a job killed outright that had this process id (a container's pids repeat)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise ArtifactError(f"{tmp} already exists{' as a symbolic link' if tmp.is_symlink() else ''}: this tool "
                            "writes only files it creates; remove it and rerun the workflow") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def provenance(kind: str, **fields: Any) -> dict:
    """A provenance record as plain JSON data (tuples become lists), so that records compare equal
    whether they were just built or read back from a file."""
    return json.loads(json.dumps({"kind": kind, **fields}, sort_keys=True))


def record(output: Output, spec: Any, **extra: Any) -> dict:
    """The provenance record of an output made by ``spec``: kind, run, identity (read from the spec),
    the spec's digest and the spec itself, the code version, and ``extra`` (the inputs' digests ...)."""
    identity = {k: getattr(spec, k) for k in output.identity}
    return provenance(output.kind, run=spec.run, **identity, spec=digest(spec), settings=dataclasses.asdict(spec),
                      code=code_version(output), **extra)


def expect(output: Output, run: str, spec: str, **identity: Any) -> dict:
    """What a reader checks in the record of an input: kind, run, identity, and the spec digest it must
    have been made by, in that order (the first difference is the one reported)."""
    return {"kind": output.kind, "run": run, **identity, "spec": spec}


def file_format(path: str | os.PathLike) -> str:
    """How an artifact at ``path`` keeps its record: ``parquet``, ``json`` or ``weights`` (a zip)."""
    suffix = Path(path).suffix
    return {".parquet": "parquet", ".json": "json"}.get(suffix, "weights")


def content_digest(path: str | os.PathLike, records: dict[str, dict | None] | None = None) -> str:
    """The digest of an artifact's content, as its record states it (``records``: records already read, by
    absolute path); the digest of its bytes for a file without one (written before records held it)."""
    key = os.path.abspath(path)
    found = records[key] if records and key in records else read_record(path, file_format(path))
    content = found.get(CONTENT) if isinstance(found, dict) else None
    return content if isinstance(content, str) else digests.of_file(path)


def inputs_record(paths: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike]], out: str | os.PathLike) -> dict:
    """``{input file: content digest}`` of a job's input files, for the record of its output ``out``: each
    path relative to ``out``'s folder, so that the record reads the same from any working folder."""
    folder = os.path.dirname(os.path.abspath(out))
    files = [p for v in paths.values() for p in (v if isinstance(v, (list, tuple)) else [v])]
    return {os.path.relpath(os.path.abspath(p), folder): content_digest(p) for p in files}


def changed_inputs(path: str | os.PathLike, found: dict, records: dict[str, dict | None] | None = None) -> list[str]:
    """The inputs recorded in ``found`` (the record of the file at ``path``) whose content is not the one it
    was made from, as absolute paths; an input that no longer exists is not counted (the workflow makes it
    first)."""
    folder = os.path.dirname(os.path.abspath(path))
    changed = []
    for rel, made_from in (found.get("read") or {}).items():
        p = os.path.normpath(os.path.join(folder, rel))
        try:
            if (p in (records or ()) or os.path.exists(p)) and content_digest(p, records) != made_from:
                changed.append(p)
        except ArtifactError:
            changed.append(p)  # damaged since: not what it was made from
    return changed


def check_provenance(path: str | os.PathLike, found: Any, expected: Mapping[str, Any]) -> dict:
    """``found`` if it is a provenance record holding every field of ``expected`` with the same value."""
    if not isinstance(found, dict):
        raise ArtifactError(f"{path}: no provenance record: it was not written by this tool, or by an older "
                            f"version; {REMEDY}")
    for field, want in expected.items():
        got = found.get(field)
        if got != want:
            what = ("was made by other settings, or from inputs made by other settings" if field == "spec"
                    else "belongs to another job or another run")
            raise ArtifactError(f"{path}: provenance field {field!r} is {got!r}, expected {want!r}: the file "
                                f"{what}; {REMEDY}")
    changed = changed_inputs(path, found)
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ArtifactError(f"{path} is out of date: it was made from {os.path.relpath(changed[0])}{more} as it was "
                            "before it changed; "
                            "rerun the workflow, which remakes it")
    return found


def read_record(path: str | os.PathLike, format: str) -> dict | None:
    """The provenance record of an output file, read without its data (parquet: the footer; weights: one
    entry of the zip); None when it has none. :class:`ArtifactError` when the file cannot be read."""
    try:
        if format == "parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(PROVENANCE_KEY)
            return json.loads(raw) if raw is not None else None
        if format == "json":
            obj = json.loads(Path(path).read_text())
            return obj.get("provenance") if isinstance(obj, dict) else None
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("provenance.json"))
    except Exception as err:  # OSError, a bad zip, bad JSON, and the several types pyarrow raises for damaged files
        raise ArtifactError(f"{path} cannot be read ({type(err).__name__}: {err})") from err


# ----------------------------------------------------------------------------- tables and JSON


def write_table(df: pd.DataFrame, path: str | os.PathLike, provenance: dict) -> None:
    """A parquet table with ``provenance`` in its schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    content = io.BytesIO()
    with pa.ipc.new_stream(content, table.schema) as stream:
        stream.write_table(table)
    provenance = {**provenance, CONTENT: digests.short(content.getvalue())}
    meta = {**(table.schema.metadata or {}), PROVENANCE_KEY: json.dumps(provenance, sort_keys=True).encode()}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    atomic_write_bytes(path, buf.getvalue())


def read_table(path: str | os.PathLike, expected: Mapping[str, Any], columns: Iterable[str] = ()) -> pd.DataFrame:
    """A table written by :func:`write_table`, its provenance checked and ``columns`` present."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(PROVENANCE_KEY)
        found = json.loads(raw) if raw is not None else None
        df = table.to_pandas()
    except Exception as err:  # pyarrow raises several types for damaged files
        raise ArtifactError(f"{path} is not a readable parquet table ({type(err).__name__}: {err}); {REMEDY}") from err
    check_provenance(path, found, expected)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ArtifactError(f"{path}: column(s) {missing} missing; {REMEDY}")
    df.attrs["provenance"] = found
    return df


def write_json(obj: dict, path: str | os.PathLike) -> None:
    """A JSON artifact ``{"provenance": ..., ...}``, the digest of the rest in its record, and of the data files
    it was drawn from when its record names them (a holdout of the same indices drawn from other images is
    other content: what is made from it must be made again)."""
    body = {k: v for k, v in obj.items() if k != "provenance"}
    drawn_from = sorted(d for _, _, d in (obj["provenance"].get("data_files") or {}).values())
    content = digests.short([json.dumps(body, sort_keys=True), *drawn_from])
    obj = {**obj, "provenance": {**obj["provenance"], CONTENT: content}}
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def read_json(path: str | os.PathLike, expected: Mapping[str, Any]) -> dict:
    """A JSON artifact ``{"provenance": ..., ...}``, its provenance checked."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ArtifactError(f"{path} is not a readable JSON file ({err}); {REMEDY}") from err
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object with a provenance record; {REMEDY}")
    check_provenance(path, obj.get("provenance"), expected)
    return obj


# ----------------------------------------------------------------------------- the train/validation holdout


def write_holdout(path: str | os.PathLike, train: np.ndarray, val: np.ndarray, provenance: dict) -> None:
    keys = OUTPUTS["holdout"].columns  # train, val
    write_json({"provenance": provenance, **{k: [int(i) for i in part] for k, part in zip(keys, (train, val))}}, path)


def read_holdout(path: str | os.PathLike, expected: Mapping[str, Any], n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices: integers in [0, ``n_images``), no duplicates, disjoint, both non-empty."""
    import numpy as np

    obj = read_json(path, expected)
    parts = []
    for name in OUTPUTS["holdout"].columns:
        idx = obj.get(name)
        if not isinstance(idx, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
            raise ArtifactError(f"{path}: {name!r} must be a list of integer image indices; {REMEDY}")
        a = np.asarray(idx, dtype=np.int64)
        if a.size == 0:
            raise ArtifactError(f"{path}: the {name} part is empty; {REMEDY}")
        if a.min() < 0 or a.max() >= n_images:
            raise ArtifactError(f"{path}: {name} index {int(a.min() if a.min() < 0 else a.max())} is outside the "
                                f"dataset's {n_images} training images; {REMEDY}")
        if len(np.unique(a)) != len(a):
            raise ArtifactError(f"{path}: the {name} part repeats indices; {REMEDY}")
        parts.append(a)
    overlap = np.intersect1d(*parts)
    if overlap.size:
        raise ArtifactError(f"{path}: {overlap.size} images are in both train and val (e.g. {int(overlap[0])}); "
                            f"{REMEDY}")
    return parts[0], parts[1]


# ----------------------------------------------------------------------------- weights and checkpoints


def _torch_save(obj: dict, path: str | os.PathLike, fmt: str, provenance: dict) -> None:
    """A zip of the format name, the provenance record and the tensors (``torch.save``), written atomically."""
    import torch

    tensors = io.BytesIO()
    torch.save(obj, tensors)
    provenance = {**provenance, CONTENT: digests.short(tensors.getvalue())}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("format", fmt)
        z.writestr("provenance.json", json.dumps(provenance, sort_keys=True))
        z.writestr("tensors.pt", tensors.getvalue())
    atomic_write_bytes(path, buf.getvalue())


def _torch_load(path: str | os.PathLike, what: str, fmt: str) -> tuple[dict, Any]:
    """The tensors and the provenance record of a file written by :func:`_torch_save` in format ``fmt``."""
    import torch

    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        with zipfile.ZipFile(path) as z:
            found = z.read("format").decode()
            provenance = json.loads(z.read("provenance.json"))
            tensors = z.read("tensors.pt")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path} is not a {what} this tool wrote ({type(err).__name__}). It must not be loaded; "
                            f"{REMEDY}") from err
    if found != fmt:
        raise ArtifactError(f"{path} is a {found!r} file, not a {what} of this version ({fmt}); {REMEDY}")
    if isinstance(provenance, dict) and provenance.get(CONTENT) not in (None, digests.short(tensors)):
        raise ArtifactError(f"{path}: its tensors are not those its record names: the file is damaged; {REMEDY}")
    try:
        obj = torch.load(io.BytesIO(tensors), map_location="cpu", weights_only=True)
    except Exception as err:  # refused pickles, truncated archives: neither may be loaded
        raise ArtifactError(
            f"{path} is not a {what} this tool wrote: it is damaged or holds objects other than tensors "
            f"({type(err).__name__}). It must not be loaded; {REMEDY}") from err
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path} is not a {what} this tool wrote; {REMEDY}")
    return obj, provenance


def save_weights(path: str | os.PathLike, supernet: dict, nodes: dict[str, dict], masks: dict[str, np.ndarray],
                 provenance: dict) -> None:
    """Supernet weights per node (the root, a level's nodes after warm-up, or trained leaves)."""
    import numpy as np
    import torch

    _torch_save({"supernet": dict(supernet),
                 "nodes": {n: {k: v.detach().cpu() for k, v in s.items()} for n, s in nodes.items()},
                 "masks": {n: torch.from_numpy(np.asarray(m, dtype=bool)) for n, m in masks.items()}},
                path, WEIGHTS_FORMAT, provenance)


def load_weights(path: str | os.PathLike, expected: Mapping[str, Any]) -> dict:
    """A weights file: ``{"supernet": shape, "nodes": {node: state}, "masks": {node: mask}, "provenance"}``."""
    obj, found = _torch_load(path, "weights file", WEIGHTS_FORMAT)
    if not isinstance(obj.get("nodes"), dict):
        raise ArtifactError(f"{path} is not a weights file of this version ({WEIGHTS_FORMAT}); {REMEDY}")
    obj["provenance"] = check_provenance(path, found, expected)
    obj["masks"] = {n: m.numpy() for n, m in obj.get("masks", {}).items()}
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict, provenance: dict) -> None:
    _torch_save(state, path, CHECKPOINT_FORMAT, provenance)


def load_checkpoint(path: str | os.PathLike, provenance: dict, log=print) -> dict | None:
    """The state in a checkpoint made with exactly ``provenance``; otherwise None, the file deleted
    and a log line saying which field differs (a damaged file is discarded the same way)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state, found = _torch_load(path, "checkpoint", CHECKPOINT_FORMAT)
        code = found.get("code") if isinstance(found, dict) else None
        if isinstance(code, dict) and code != provenance.get("code"):
            changed = sorted(m for m in {*code, *provenance.get("code", {})} if code.get(m) != provenance["code"].get(m))
            raise ArtifactError(f"{path}: made by other code ({', '.join(f'{m}.py' for m in changed)} changed since)")
        check_provenance(path, found, provenance)
    except ArtifactError as err:
        log(f"discarding checkpoint {path}: {str(err).split('; delete')[0]}")
        path.unlink(missing_ok=True)
        return None
    return state


# ----------------------------------------------------------------------------- split records


def write_splits(records: list, path: str | os.PathLike, provenance: dict) -> None:
    """One level's split records (:class:`~fewshot_core.splitting.SplitRecord`) of one tree."""
    write_json({"provenance": provenance, "splits": [r.to_dict() for r in records]}, path)


def read_splits(path: str | os.PathLike, expected: Mapping[str, Any]) -> list:
    """The split records of one level of one tree (``expected`` names its metric, seed and level, and
    what else its record must say); every record must belong to that tree and level."""
    from fewshot_core.errors import SplitError
    from fewshot_core.splitting import SplitRecord

    obj = read_json(path, expected)
    metric, seed, level = expected["metric"], expected["seed"], expected["level"]
    items = obj.get("splits")
    if not isinstance(items, list) or not items:
        raise ArtifactError(f"{path}: no split records; {REMEDY}")
    out = []
    for item in items:
        try:
            rec = SplitRecord.from_dict(item)
        except (SplitError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise ArtifactError(f"{path}: {err}; {REMEDY}") from err
        found = {"metric": rec.metric, "seed": rec.seed, "depth": rec.depth}
        want = {"metric": metric, "seed": seed, "depth": level}
        if found != want:
            raise ArtifactError(f"{path}: the split of node {rec.node} says {found}, expected {want}: it belongs "
                                f"to another tree; {REMEDY}")
        out.append(rec)
    return out


def read_tree_splits(paths: list[str | os.PathLike], expected: list[Mapping[str, Any]]) -> list:
    """Every level's split records of one tree, ``paths`` and ``expected`` in level order."""
    if len(paths) != len(expected):
        raise ArtifactError(f"expected {len(expected)} split files, one per level above, got {len(paths)}")
    return [r for p, want in zip(paths, expected) for r in read_splits(p, want)]
