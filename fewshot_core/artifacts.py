"""Every file the workflow writes or reads: atomic writes, provenance, tables, JSON, weights, checkpoints.

Each artifact carries a provenance record (:func:`record`): its kind, run and identity (metric, seed,
level or chunk), its key (:func:`fewshot_core.outputs.key`: the digest of its kind, its spec, which names
its inputs' keys, and its stage's code), the spec itself and the code digests (to say what changed), and
the digest of its own content (``content``). Every reader states what it expects (:func:`expect`: kind,
run, identity and key) and :func:`check_provenance` compares, then checks the bytes it read against
``content``: a file copied to the wrong place, made by other settings or code, or from inputs since
remade, or edited by hand, is an error naming the file, the field, both values and the remedy.
:func:`read_record` reads a record alone, without the data and without torch, for the workflow's start-up
check. Weight files are a zip holding the record beside the tensors, which are read with
``weights_only=True``: no file can run code when loaded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot_core import digests
from fewshot_core.errors import ArtifactError
from fewshot_core.outputs import OUTPUTS, Output, code_version, key
from fewshot_core.settings import canonical_json

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
    exception, SIGTERM and SIGINT included (the command line turns both into exceptions; both are held while
    the file is made, so one cannot land between its making and the ``try`` that removes it), so a killed
    job leaves neither a partial file nor a stray one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.is_file() and not tmp.is_symlink():
        tmp.unlink()  # left by a job killed outright that had this process id (a container's pids repeat)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # until the try below
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise ArtifactError(f"{tmp} already exists{' as a symbolic link' if tmp.is_symlink() else ''}: this tool "
                            "writes only files it creates; remove it and rerun the workflow") from None
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a signal held since the file was made lands here
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
    its key, the spec itself and the code digests it was made with, and ``extra`` (the device ...)."""
    identity = {k: getattr(spec, k) for k in output.identity}
    return provenance(output.kind, run=spec.run, **identity, key=key(output, canonical_json(spec)),
                      settings=dataclasses.asdict(spec), code=code_version(output), **extra)


def expect(output: Output, run: str, key: str, **identity: Any) -> dict:
    """What a reader checks in the record of an input: kind, run, identity, and the key it must have been
    made with, in that order (the first difference is the one reported)."""
    return {"kind": output.kind, "run": run, **identity, "key": key}


def check_provenance(path: str | os.PathLike, found: Any, expected: Mapping[str, Any], content: str | None = None) -> dict:
    """``found`` if it is a provenance record holding every field of ``expected`` with the same value, and
    (``content`` given) naming that digest of the bytes read as its own."""
    if not isinstance(found, dict):
        raise ArtifactError(f"{path}: no provenance record: it was not written by this tool, or by an older "
                            f"version; {REMEDY}")
    for field, want in expected.items():
        got = found.get(field)
        if got != want:
            what = ("was made by other settings or code, or from inputs made so" if field == "key"
                    else "belongs to another job or another run")
            raise ArtifactError(f"{path}: provenance field {field!r} is {got!r}, expected {want!r}: the file "
                                f"{what}; {REMEDY}")
    if content is not None and found.get(CONTENT) != content:
        raise ArtifactError(f"{path}: its content is not the one its record names: it was edited or damaged "
                            f"since it was written; {REMEDY}")
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
    plain = io.BytesIO()
    pq.write_table(table, plain)  # the digest is of the frame a reader gets back (pandas' types come back others)
    provenance = {**provenance, CONTENT: _table_digest(pq.read_table(plain, use_threads=False).to_pandas())}
    meta = {**(table.schema.metadata or {}), PROVENANCE_KEY: json.dumps(provenance, sort_keys=True).encode()}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    atomic_write_bytes(path, buf.getvalue())


def _table_digest(df: pd.DataFrame) -> str:
    """The digest of a table's columns and values, as read back: the Arrow stream of the frame, the schema's
    metadata left out."""
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    stream = io.BytesIO()
    with pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table)
    return digests.short(stream.getvalue())


def read_table(path: str | os.PathLike, expected: Mapping[str, Any], columns: Iterable[str] = ()) -> pd.DataFrame:
    """A table written by :func:`write_table`, its provenance checked and ``columns`` present."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(PROVENANCE_KEY)
        found = json.loads(raw) if raw is not None else None
        df = table.to_pandas()
        content = _table_digest(df)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise ArtifactError(f"{path} is not a readable parquet table ({type(err).__name__}: {err}); {REMEDY}") from err
    check_provenance(path, found, expected, content)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ArtifactError(f"{path}: column(s) {missing} missing; {REMEDY}")
    df.attrs["provenance"] = found
    return df


def _json_digest(obj: dict) -> str:
    """The digest of a JSON artifact's content: everything beside its record."""
    return digests.short(json.dumps({k: v for k, v in obj.items() if k != "provenance"}, sort_keys=True))


def write_json(obj: dict, path: str | os.PathLike) -> None:
    """A JSON artifact ``{"provenance": ..., ...}``, the digest of the rest in its record."""
    obj = {**obj, "provenance": {**obj["provenance"], CONTENT: _json_digest(obj)}}
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def read_json(path: str | os.PathLike, expected: Mapping[str, Any]) -> dict:
    """A JSON artifact ``{"provenance": ..., ...}``, its provenance checked."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ArtifactError(f"{path} is not a readable JSON file ({err}); {REMEDY}") from err
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object with a provenance record; {REMEDY}")
    check_provenance(path, obj.get("provenance"), expected, _json_digest(obj))
    return obj


# ----------------------------------------------------------------------------- figures


def write_figure_record(path: str | os.PathLike, provenance: dict) -> None:
    """Put ``provenance`` into a PNG figure as a text chunk before its end (the PNG stays a valid image):
    the keys of the tables it was drawn from, which the report compares with the tables' keys now."""
    data = Path(path).read_bytes()
    text = PROVENANCE_KEY + b"\0" + json.dumps(provenance, sort_keys=True).encode()
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    end = data.rindex(b"IEND") - 4  # the end chunk's length field
    atomic_write_bytes(path, data[:end] + chunk + data[end:])


def read_figure_record(path: str | os.PathLike) -> dict | None:
    """The record :func:`write_figure_record` put into a PNG figure; None when it has none."""
    data, pos = Path(path).read_bytes(), 8  # after the PNG signature
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(PROVENANCE_KEY + b"\0"):
            try:
                return json.loads(body[len(PROVENANCE_KEY) + 1:])
            except ValueError:
                return None
        pos += 12 + length
    return None


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
    if not isinstance(provenance, dict) or provenance.get(CONTENT) != digests.short(tensors):
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


@dataclasses.dataclass(frozen=True)
class Checkpoints:
    """Where a training run keeps its state between epochs, for the output of key ``key``: a checkpoint is
    resumed only when it was made for that key by a training run of the same origin (the run's settings,
    network, data and start weights, :func:`fewshot_core.train.origin`); any other is discarded."""

    path: Path
    key: str

    def load(self, origin: dict, log=print) -> dict | None:
        """The state saved for this key and origin; otherwise None, the file deleted and a log line saying
        which field differs (a damaged file is discarded the same way)."""
        if not self.path.exists():
            return None
        try:
            state, found = _torch_load(self.path, "checkpoint", CHECKPOINT_FORMAT)
            check_provenance(self.path, found, self._provenance(origin))
        except ArtifactError as err:
            log(f"discarding checkpoint {self.path}: {str(err).split('; delete')[0]}")
            self.path.unlink(missing_ok=True)
            return None
        return state

    def save(self, state: dict, origin: dict) -> None:
        _torch_save(state, self.path, CHECKPOINT_FORMAT, self._provenance(origin))

    def _provenance(self, origin: dict) -> dict:
        return provenance("checkpoint", key=self.key, origin=origin)


# ----------------------------------------------------------------------------- split records


def write_splits(records: list, path: str | os.PathLike, provenance: dict) -> None:
    """One level's split records (:class:`~fewshot_core.splitting.SplitRecord`) of one tree."""
    write_json({"provenance": provenance, "splits": [r.to_dict() for r in records]}, path)
