"""The workflow's start-up check: every existing output's key compared with the key this configuration and
this code give it.

An output's key (:func:`fewshot_core.outputs.key`) covers its settings, its stage's code and its inputs' keys,
so one comparison per file says whether it is current, whatever changed upstream; the rest of its record
(settings, code digests) only says what changed. Snakemake reruns a job whose parameters changed only while
it remembers them (``.snakemake``); these keys hold with it deleted. Each output has a stamp,
``results/<run>/.stamps/<its path>``, a file holding its key that its rule declares as an input: rewritten
now when the file is stale, it is newer than the file and Snakemake remakes it, and everything after it,
where a target needs it, by its ordinary rules; dated 1970 otherwise (:func:`mark`). The records are read without their data (parquet
footers, JSON, one entry of a weights zip). Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fewshot_core import artifacts, digests
from fewshot_core.errors import ArtifactError
from fewshot_core.outputs import FIGURES, OUTPUTS, code_version, key
from fewshot_core.plan import RunSettings
from fewshot_core.settings import canonical_json

#: How the start-up lines and the report's refusal name each problem that reruns a file.
STATES = {"settings": "made with other settings", "code": "made by other code",
          "inputs": "made from inputs made by other settings or code, or from other data",
          "damaged": "unreadable or without a provenance record"}
#: Under a run's folder: one empty file per output, at the output's path (see the module's docstring).
STAMPS = ".stamps"


@dataclass
class Finding:
    """One existing output that this configuration would not make as it is."""

    path: str
    kind: str
    group: str  # "snip/seed0", "seed0" or "run": what the start-up lines are grouped by
    problem: str  # a key of STATES
    changes: list[str] = field(default_factory=list)  # "batch_size 32 -> 16", or the modules that changed


def _group(identity: dict) -> str:
    if "metric" in identity and "seed" in identity:
        return f"{identity['metric']}/seed{identity['seed']}"
    if "proxy" in identity:
        return f"{identity['proxy']} (training-free)"
    return f"seed{identity['seed']}" if "seed" in identity else "run"


def _flat(obj, prefix: str = "") -> dict[str, object]:
    """A nested record as ``{dotted.path: value}``."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return {k: v for i, val in enumerate(obj) for k, v in _flat(val, f"{prefix}{i}.").items()}
    return {prefix[:-1]: obj}


def setting_changes(found: dict | None, wanted: dict) -> list[str]:
    """The settings that differ between two specs, as ``name old -> new`` (the inputs' keys left out: a file
    made from stale inputs says so in its own group)."""
    old, new = _flat(found or {}), _flat(json.loads(json.dumps(wanted)))
    changes = []
    for dotted in sorted(set(old) | set(new)):
        if dotted.split(".")[0] == "inputs" or old.get(dotted) == new.get(dotted):
            continue
        name = next((p for p in reversed(dotted.split(".")) if not p.isdigit()), dotted)
        if name == "images":
            name = f"the files of {new.get('data.name', 'the dataset')}"
        changes.append(f"{name} {old.get(dotted, '(none)')} -> {new.get(dotted, '(none)')}")
    return changes


def check(settings: RunSettings, root: str | Path = ".") -> list[Finding]:
    """Every output of the run that exists under ``root`` and whose key is not the one this configuration and
    this code give it, with what changed."""
    run_dir, base = f"results/{settings.run}", os.path.abspath(root)
    findings = []
    for kind, identity in settings.outputs():
        out = OUTPUTS[kind]
        path = out.path(run_dir, **identity)
        full = os.path.join(base, path)
        if not os.path.exists(full):
            continue
        group = _group(identity)
        try:
            found = artifacts.read_record(full, out.format)
        except ArtifactError:
            findings.append(Finding(path, kind, group, "damaged", [f"{path} cannot be read"]))
            continue
        if not isinstance(found, dict):
            findings.append(Finding(path, kind, group, "damaged", [f"{path} has no provenance record"]))
            continue
        wanted = artifacts.expect(out, settings.run, settings.key(kind, *identity.values()), **identity)
        field_ = next((k for k, v in wanted.items() if found.get(k) != v), None)
        if field_ == "key":
            findings.append(_why(path, kind, group, found, settings.spec_for(kind, identity)))
        elif field_ is not None:
            findings.append(Finding(path, kind, group, "settings",
                                    [f"made as {field_} {found.get(field_)!r}, not {wanted[field_]!r}"]))
        elif changed := digests.changed_files(found.get("data_files") or {}, base):  # the benchmark's archive
            findings.append(Finding(path, kind, group, "inputs", changed))
    return findings


def _why(path: str, kind: str, group: str, found: dict, spec) -> Finding:
    """What made a file's key differ: its own settings, its stage's code, or else its inputs."""
    changes = setting_changes(found.get("settings"), dataclasses.asdict(spec))
    if changes:
        return Finding(path, kind, group, "settings", changes)
    code = found.get("code") or {}
    modules = sorted(m for m, d in code_version(OUTPUTS[kind]).items() if code.get(m) != d)
    if modules:
        return Finding(path, kind, group, "code", [f"stages.py ({m[7:]})" if m.startswith("stages.")
                                                   else f"{m.replace('.', '/')}.py" for m in modules])
    return Finding(path, kind, group, "inputs")


def mark(settings: RunSettings, findings: list[Finding], root: str | Path = ".") -> None:
    """Give every output of the run its stamp: its key, dated 1970 (older than any file) while the file is
    current; when it is stale, its key and the time, dated now, so that Snakemake, which compares a small
    input's content with what it recorded as well as its date, remakes the file."""
    run_dir = f"results/{settings.run}"
    stale = {f.path for f in findings}
    for kind, identity in settings.outputs():
        path = OUTPUTS[kind].path(run_dir, **identity)
        full = Path(root, stamp(path, run_dir))
        text = settings.key(kind, *identity.values())
        if path in stale:
            text += f" stale since {time.time_ns()}"
        elif full.is_file() and full.stat().st_mtime_ns == 0 and full.read_text() == text:
            continue
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)
        if path not in stale:
            os.utime(full, ns=(0, 0))


def stamp(path: str, run_dir: str) -> str:
    """The stamp of a run's output ``path``."""
    return str(Path(run_dir, STAMPS, Path(path).relative_to(run_dir)))


def stale_in_run(run_dir: str | Path) -> dict[str, str]:
    """Every output under a run's folder that is not what its inputs there and this code make, with why: its
    record unreadable, its stage's code changed since, or an input it names by key no longer there with that
    key (remade or removed) or itself stale. Needs no configuration: what ``fewshot summary`` goes by."""
    records = {}
    for out in OUTPUTS.values():
        for path in sorted(Path(run_dir).glob(re.sub(r"\{\w+\}", "*", out.template))):
            try:
                records[str(path)] = out, artifacts.read_record(path, out.format)
            except ArtifactError:
                records[str(path)] = out, None
    by_key = {found["key"]: p for p, (_, found) in records.items() if isinstance(found, dict) and "key" in found}
    why: dict[str, str | None] = {}

    def visit(path: str) -> str | None:
        if path not in why:
            out, found = records[path]
            why[path] = None
            if not isinstance(found, dict) or not isinstance(found.get("settings"), dict):
                why[path] = "it has no readable record"
            elif key(out, canonical_json(found["settings"])) != found.get("key"):
                why[path] = "it was made by other code"
            else:
                inputs = _keys(found["settings"].get("inputs") or {})
                gone = next((k for k in inputs if k not in by_key), None)
                if gone is not None:
                    why[path] = "it was made from an input since remade or removed"
                elif stale := next((by_key[k] for k in inputs if visit(by_key[k])), None):
                    why[path] = f"it was made from {stale}, which is stale"
        return why[path]

    return {p: r for p in records if (r := visit(p))}


def _keys(inputs: dict) -> list[str]:
    """The keys a spec's inputs name, in order."""
    return [k for v in inputs.values() for k in (v if isinstance(v, list) else [v])]


def report_refusal(settings: RunSettings, findings: list[Finding], kinds: set[str], figures: list[str],
                   root: str | Path = ".") -> str | None:
    """Why a report of this configuration would show results it never made (None when it would not): a
    figure, or an output of ``kinds`` (the tables the figures are drawn from), missing or stale, or a figure
    drawn from other tables. The tables' keys cover everything they were made from, so no more is read."""
    run_dir = f"results/{settings.run}"
    missing = [f for f in figures if not Path(root, f).exists()]
    missing += [p for k, i in settings.outputs() if k in kinds
                and not Path(root, p := OUTPUTS[k].path(run_dir, **i)).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"{missing[0]}{more} does not exist"
    stale = [f for f in findings if f.kind in kinds]
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        why = STATES[stale[0].problem]
        changes = f" ({', '.join(stale[0].changes[:3])})" if stale[0].changes else ""
        return f"{stale[0].path}{more} was {why}{changes}"
    for figure in FIGURES.values():
        png = figure.files(run_dir)[0]
        if png in figures:
            made_from = (artifacts.read_figure_record(Path(root, png)) or {}).get("made_from")
            if made_from != settings.figure_spec(figure.rule).inputs:
                return f"{png} was drawn from other tables than this configuration's (or carries no record)"
    return None


def links(run_dir: str | Path) -> list[str]:
    """Every symbolic link under a run's folder that is not a folder: an output, log or benchmark file a
    job writes there would be written through it (Snakemake writes logs and benchmarks by following links),
    overwriting its target outside ``results/``. Folders may be links (results on another disk)."""
    found, todo = [], [Path(run_dir)]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_symlink() and not entry.is_dir():
                found.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
    return sorted(found)


def links_line(run_dir: str | Path) -> str | None:
    """What stops a run with symbolic links planted under its folder, or None when there is none."""
    planted = links(run_dir)
    if not planted:
        return None
    more = f" (and {len(planted) - 1} more)" if len(planted) > 1 else ""
    return (f"{planted[0]} is a symbolic link{more}: the workflow writes only real files under results/, and a job "
            f"would write through it to {os.path.realpath(planted[0])}; remove it")


def report(findings: list[Finding]) -> list[str]:
    """One line per group of outputs made with other settings or from other inputs, and one per set of
    changed modules."""
    by_group: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        by_group[f.group if f.problem != "code" else ", ".join(f.changes), f.problem].append(f)
    lines = []
    for (group, problem), items in by_group.items():
        n = f"{len(items)} file{'s' * (len(items) != 1)}"
        if problem == "code":
            lines.append(f"{n} made by other code ({group} changed since): remade where the targets need them")
            continue
        changes = list(dict.fromkeys(c for f in items for c in f.changes))
        what = f" ({', '.join(changes[:3])}{', ...' if len(changes) > 3 else ''})" if changes else ""
        lines.append(f"{group}: {n} {STATES[problem]}{what}: remade where the targets need them")
    return lines
