"""The workflow's start-up check: every existing output compared with what this configuration would make.

Snakemake reruns a job whose parameters changed only while it remembers them (``.snakemake``); the
outputs' own provenance records say which settings and which code made them, and are read here at
every start, before any job (records only: parquet footers, JSON, one entry of a weights zip). An
output made by other settings, for another job or run, or whose record cannot be read, is scheduled
again, and so is one made from an input whose content has changed since (its record's ``read``
against the input's own record) or from data files that changed (``data_files``: the dataset's files
under the holdout's record, the benchmark archive's under its table's); one made by other code is
listed with the modules that changed, and rerun only when the configuration says
``rerun_on_code_change: true``. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fewshot_core import artifacts, digests
from fewshot_core.errors import ArtifactError
from fewshot_core.outputs import OUTPUTS, code_version
from fewshot_core.plan import RunSettings

#: How the start-up lines and the report's refusal name each problem that reruns a file.
STATES = {"settings": "made with other settings", "inputs": "made from inputs that have changed since",
          "damaged": "unreadable or without a provenance record"}


@dataclass
class Finding:
    """One existing output that this configuration would not make as it is."""

    path: str
    kind: str
    group: str  # "snip/seed0", "seed0" or "run": what the start-up lines are grouped by
    problem: str  # "settings", "damaged", "inputs" (all rerun) or "code" (listed; rerun on request)
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
    run_dir, base = f"results/{settings.run}", os.path.abspath(root)
    findings, current = [], []
    records: dict[str, dict | None] = {}  # every record read, by absolute path: the inputs' comparisons reuse them
    for kind, identity in settings.outputs():
        out = OUTPUTS[kind]
        path = out.path(run_dir, **identity)
        full = os.path.join(base, path)
        if not os.path.exists(full):
            continue
        group = _group(identity)
        try:
            found = records[full] = artifacts.read_record(full, out.format)
        except ArtifactError:
            findings.append(Finding(path, kind, group, "damaged", [f"{path} cannot be read"]))
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
            current.append((path, kind, group, found))
            code = found.get("code") or {}
            changed = sorted(m for m, d in code_version(out).items() if code.get(m) != d)
            if changed:
                findings.append(Finding(path, kind, group, "code", [f"{m}.py" for m in changed]))
    for path, kind, group, found in current:
        changed = [os.path.relpath(c, base) for c in artifacts.changed_inputs(os.path.join(base, path), found, records)]
        changed += digests.changed_files(found.get("data_files") or {}, base)  # the dataset's, the benchmark's
        if changed:
            findings.append(Finding(path, kind, group, "inputs", changed))
    return findings


def report_refusal(settings: RunSettings, findings: list[Finding], kinds: set[str], figures: list[str],
                   root: str | Path = ".") -> str | None:
    """Why a report of this configuration would show results it never made (None when it would not): a
    figure, or an output of ``kinds`` (those the figures are drawn from), missing, or made by other settings
    or from inputs that have changed since."""
    run_dir = f"results/{settings.run}"
    missing = [f for f in figures if not Path(root, f).exists()]
    missing += [p for k, i in settings.outputs() if k in kinds
                and not Path(root, p := OUTPUTS[k].path(run_dir, **i)).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"{missing[0]}{more} does not exist"
    stale = [f for f in findings if f.kind in kinds and f.problem != "code"]
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        why = STATES[stale[0].problem]
        changes = f" ({', '.join(stale[0].changes[:3])})" if stale[0].changes else ""
        return f"{stale[0].path}{more} was {why}{changes}"
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
        lines.append(f"{group}: {len(items)} file{'s' * (len(items) != 1)} {STATES[problem]} ({what}): {fate}")
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
