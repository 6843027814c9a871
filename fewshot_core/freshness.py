"""The workflow's start-up check: every existing output compared with what this configuration would make.

Snakemake reruns a job whose parameters changed only while it remembers them (``.snakemake``); the
outputs' own provenance records say which settings and which code made them, and are read here at
every start, before any job (records only: parquet footers, JSON, one entry of a weights zip). An
output made by other settings, for another job or run, or whose record cannot be read, is scheduled
again; one made by other code is listed with the modules that changed, and rerun only when the
configuration says ``rerun_on_code_change: true``. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fewshot_core import artifacts
from fewshot_core.errors import ArtifactError
from fewshot_core.outputs import OUTPUTS, code_version
from fewshot_core.plan import RunSettings


@dataclass
class Finding:
    """One existing output that this configuration would not make as it is."""

    path: str
    kind: str
    group: str  # "snip/seed0", "seed0" or "run": what the start-up lines are grouped by
    problem: str  # "settings", "damaged" (both rerun) or "code" (listed; rerun on request)
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
    """The settings that differ between two specs, as ``name old -> new`` (the inputs' digests left out:
    a file made from stale inputs says so in its own group)."""
    old, new = _flat(found or {}), _flat(json.loads(json.dumps(wanted)))
    changes = []
    for key in sorted(set(old) | set(new)):
        if key.split(".")[0] == "inputs" or old.get(key) == new.get(key):
            continue
        name = next((p for p in reversed(key.split(".")) if not p.isdigit()), key)
        changes.append(f"{name} {old.get(key, '(none)')} -> {new.get(key, '(none)')}")
    return changes


def check(settings: RunSettings, root: str | Path = ".") -> list[Finding]:
    """Every output of the run that exists under ``root`` and that this configuration would not make so."""
    run_dir = f"results/{settings.run}"
    findings = []
    for kind, identity in settings.outputs():
        out = OUTPUTS[kind]
        path = out.path(run_dir, **identity)
        if not Path(root, path).exists():
            continue
        group = _group(identity)
        try:
            found = artifacts.read_record(Path(root, path), out.format)
        except ArtifactError as err:
            findings.append(Finding(path, kind, group, "damaged", [str(err).split(" (")[0]]))
            continue
        if not isinstance(found, dict):
            findings.append(Finding(path, kind, group, "damaged", [f"{path} has no provenance record"]))
            continue
        spec = settings.spec_for(kind, identity)
        wanted = artifacts.expect(out, settings.run, settings.digest_of(spec), **identity)
        field_ = next((k for k, v in wanted.items() if found.get(k) != v), None)
        if field_ == "spec":
            findings.append(Finding(path, kind, group, "settings",
                                    setting_changes(found.get("settings"), dataclasses.asdict(spec))))
        elif field_ is not None:
            findings.append(Finding(path, kind, group, "settings",
                                    [f"made as {field_} {found.get(field_)!r}, not {wanted[field_]!r}"]))
        else:
            code = found.get("code") or {}
            changed = sorted(m for m, d in code_version(out).items() if code.get(m) != d)
            if changed:
                findings.append(Finding(path, kind, group, "code", [f"{m}.py" for m in changed]))
    return findings


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


def rerun(findings: list[Finding], rerun_on_code_change: bool) -> list[Finding]:
    """The findings whose files are scheduled again."""
    return [f for f in findings if f.problem != "code" or rerun_on_code_change]


def report(findings: list[Finding], forced: set[str], rerun_on_code_change: bool) -> list[str]:
    """One line per group of outputs made by other settings, and one per set of changed modules."""
    lines = []
    by_group: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        if f.problem != "code":
            by_group[f.group, f.problem].append(f)
    for (group, problem), items in by_group.items():
        changes = list(dict.fromkeys(c for f in items for c in f.changes))
        what = ", ".join(changes[:3]) + (", ..." if len(changes) > 3 else "") if changes else \
            "their inputs were made with other settings"
        now = sum(f.path in forced for f in items)
        fate = "rerunning" if now == len(items) else (
            f"rerunning {now}, the others are not needed for this target" if now else "not needed for this target")
        state = "made with other settings" if problem == "settings" else "unreadable or without a provenance record"
        lines.append(f"{group}: {len(items)} file{'s' * (len(items) != 1)} {state} ({what}): {fate}")
    by_code: dict[tuple[str, ...], list[Finding]] = defaultdict(list)
    for f in findings:
        if f.problem == "code":
            by_code[tuple(f.changes)].append(f)
    for modules, items in by_code.items():
        rules = list(dict.fromkeys(OUTPUTS[f.kind].rule for f in items))
        head = f"{len(items)} file{'s' * (len(items) != 1)} made by other code ({', '.join(modules)} changed since)"
        if rerun_on_code_change:
            lines.append(f"{head}: rerunning (rerun_on_code_change: true)")
        else:
            lines.append(f"{head}: kept. `snakemake --forcerun {' '.join(rules)}` reruns them, or set "
                         "rerun_on_code_change: true in the configuration")
    return lines
