"""Each stage's interface agrees wherever it is stated, checked in a second without running anything: the
rule (its named inputs and outputs, its shell command), the stage function's parameters (which the command
line's options follow: ``cli.options``), the catalogue's rule for each output, and the names of the inputs its spec records."""

from __future__ import annotations

import inspect
import re

import pytest

from fewshot_core import cli
from fewshot_core.checks import load_settings
from fewshot_core.outputs import FIGURES, OUTPUTS
from tests.conftest import ROOT, load_scenario

NOT_FILES = {"spec", "log", "device"}  # a stage's parameters that are no file: its settings, its log, its device


def rules() -> dict[str, dict]:
    """Every rule of workflow/rules/*.smk: its named inputs and outputs, and its shell command."""
    found = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule )", path.read_text(), flags=re.M)[1:]:
            name = re.match(r"rule (\w+):", block).group(1)
            sections = dict(re.findall(r"^    (\w+):\n((?:^(?:        .*|\s*)\n)*)", block, flags=re.M))
            named = {s: set(re.findall(r"^        (\w+)=", sections.get(s, ""), flags=re.M)) for s in ("input", "output")}
            shell = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', sections.get("shell", "")))
            found[name] = {**named, "shell": shell, "outputs": sections.get("output", "")}
    return found


RULES = rules()
FEWSHOT = {rule: r for rule, r in RULES.items() if re.search(r"\bfewshot [\w-]+", r["shell"])}


def command(rule: str) -> str:
    return re.search(r"\bfewshot ([\w-]+)", RULES[rule]["shell"]).group(1)


def flags(rule: str) -> dict[str, str]:
    """``{--flag: what the rule passes}`` of its shell command."""
    return dict(re.findall(r"(--[\w-]+) \{([\w.\[\]]+)(?::q)?\}", RULES[rule]["shell"]))


def test_the_rules_were_read():
    assert len(FEWSHOT) >= 17 and {"score_edges", "train_leaves", "rank_study", "draw_figures"} <= set(FEWSHOT)


@pytest.mark.parametrize("rule", sorted(FEWSHOT))
def test_a_rules_command_is_its_stage_with_the_stages_own_flags(rule):
    stage = cli.STAGES[command(rule)]
    assert stage.__name__ == rule, "a rule runs the stage of its own name"
    _, kinds = cli.options(stage)  # the command's options are the stage's parameters
    cli_flags = {"--" + option.replace("_", "-") for option in kinds}
    given = flags(rule)
    optional = {"--" + option.replace("_", "-") for option, kind in kinds.items() if kind != "one"} | {"--device"}
    assert set(given) - {"--spec"} <= cli_flags, "the rule passes a flag the command does not take"
    assert cli_flags - optional <= set(given), "the rule leaves out a flag the command needs"
    for flag, what in given.items():
        part, _, name = what.partition(".")
        if part in ("input", "output"):
            assert name in RULES[rule][part] or name == "", f"{flag} takes {what}, which the rule does not name"


@pytest.mark.parametrize("rule", sorted(FEWSHOT))
def test_every_input_a_spec_records_is_a_file_the_stage_reads(rule):
    """The spec's ``inputs`` name the keys of exactly the files the stage reads (its parameters but its
    outputs and its checkpoints folder)."""
    settings = load_settings({**load_scenario("tiny"), "training": {"warmup": {"epochs": 1}}})
    made = [o for o in OUTPUTS.values() if o.rule == rule] or [f for f in FIGURES.values() if f.rule == rule]
    if not made:
        pytest.skip(f"{rule} makes no catalogued output")
    kind = made[0]
    if kind in FIGURES.values():
        spec = getattr(settings, {"draw_figures": "figures_spec", "draw_ranking": "ranking_figure_spec"}[rule])()
    else:
        identity = {"metric": "snip", "seed": 0, "level": 1, "chunk": 0, "gt": 0, "budget": 4, "proxy": "snip"}
        spec = settings.spec_for(kind.kind, {k: identity[k] for k in kind.identity})
    stage = cli.STAGES[command(rule)]
    reads = {p for p in inspect.signature(stage).parameters if not p.startswith("out")}
    reads -= NOT_FILES | {"checkpoints"}
    recorded = set(getattr(spec, "inputs", {}))
    assert recorded == reads, f"{rule}: the spec records {sorted(recorded)}, the stage reads {sorted(reads)}"


def test_every_catalogued_output_is_made_by_a_rule_that_writes_it():
    for o in OUTPUTS.values():
        assert f'out("{o.kind}")' in RULES[o.rule]["outputs"], f"rule {o.rule} does not write {o.kind}"
    for f in FIGURES.values():
        assert f'figure_pngs("{f.rule}")' in RULES[f.rule]["outputs"], f"rule {f.rule} does not draw {f.name}"
        assert (ROOT / "workflow" / "report" / f.caption).is_file(), f.name


def test_the_science_imports_nothing_of_the_machinery():
    """The search space, metrics, splitting, training, ranking, distance, data and benchmark know nothing of
    records, settings, specs or the command line (fewshot_core/dependencies.py lists the machinery); imports
    made for type annotations alone (under ``TYPE_CHECKING``) do not count: they never run."""
    import ast

    from fewshot_core import dependencies

    def runtime_imports(tree: ast.AST) -> set[str]:
        found = set()
        for node in ast.iter_child_nodes(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(m for m in dependencies._named(node).values() if m)
            found |= runtime_imports(node)
        return found

    package = dependencies.PACKAGE
    science = {p.relative_to(package).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
               for p in package.rglob("*.py")} - dependencies.MACHINERY - {"__init__", "errors"}
    assert {"space", "metrics", "splitting", "train", "ranking", "distance", "data", "benchmark"} <= science
    reaching = {m: sorted(runtime_imports(ast.parse(dependencies.module_file(m).read_text())) & dependencies.MACHINERY)
                for m in sorted(science)}
    assert not {m: r for m, r in reaching.items() if r}, "science modules importing the machinery"
