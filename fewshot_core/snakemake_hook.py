"""The one place this workflow reaches into Snakemake's internals, and why.

The start-up check (:mod:`fewshot_core.freshness`) must add the outputs made by other settings to
``--forcerun`` before Snakemake builds its DAG, and must know the requested targets to force only what they
need. Snakemake hands a workflow both (``Workflow.dag_settings``: targets, forcerun) only after the Snakefile
has been parsed; Snakemake 9 offers no hook in between (``onstart`` runs once the DAG is built, and no plugin
interface sees the DAG settings), and its command line cannot be told at parse time. So the assignment of
``dag_settings`` is intercepted on this workflow object's class. ``tests/test_snakemake_hook.py`` checks it
against the Snakemake that is installed; a Snakemake whose workflow has no ``dag_settings`` stops the run
with a message, rather than running without the check. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable

#: The Snakemake major versions this hook has been checked against (pyproject.toml pins the same).
CHECKED = (9,)


class HookError(RuntimeError):
    """The installed Snakemake does not offer what the hook intercepts."""


def when_the_dag_is_built(workflow, call: Callable) -> None:
    """Call ``call(dag_settings)`` once Snakemake gives ``workflow`` its DAG settings (at once if it has)."""
    import snakemake

    major = int(snakemake.__version__.split(".")[0])
    if major not in CHECKED:
        raise HookError(f"Snakemake {snakemake.__version__} is not one this workflow's start-up check works with "
                        f"(major versions {CHECKED}); install the version pyproject.toml names")
    if not hasattr(workflow, "dag_settings"):
        raise HookError(f"this Snakemake {snakemake.__version__} gives its workflow no dag_settings, which the "
                        "start-up check needs; install the version pyproject.toml names")
    if workflow.dag_settings is not None:
        call(workflow.dag_settings)
        return

    def assign(self, value):
        if value is not None:
            call(value)
        self.__dict__["_dag_settings"] = value

    class CheckedWorkflow(type(workflow)):
        dag_settings = property(lambda self: self.__dict__.get("_dag_settings"), assign)

    workflow.__class__ = CheckedWorkflow


def making_a_report() -> bool:
    """True when this Snakemake was started to write a report (``--report``) without running the workflow
    first: Snakemake tells a workflow nothing of it, so its command line is read."""
    import sys

    args = sys.argv[1:]
    return any(a == "--report" or a.startswith("--report=") for a in args) and "--report-after-run" not in args
