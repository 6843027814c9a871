"""The metric catalogue: every metric's name, display name, kind, family, settings and source module.

Torch-free on purpose: the workflow reads it while it parses (names, settings to check, the code
hash of a metric's source), the figures read it for names and order, and
:mod:`fewshot_core.metrics` binds each entry to the function that computes it. A metric is added
here and registered there; a test checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["scalar", "vector", "none"]
METRICS_DIR = Path(__file__).resolve().parent / "metrics"
#: Source files every metric's values depend on besides its own module.
SHARED_SOURCES = ("base.py", "__init__.py")


@dataclass(frozen=True)
class Setting:
    """One setting of a metric: its default, the Python type a configuration value must have, and the
    values the metric can run with (checked before any job)."""

    default: float | int | bool
    type: type
    help: str
    low: float | None = None  # the least value allowed
    above: bool = False  # ``low`` itself excluded
    even: bool = False
    within_input: bool = False  # at most data.input_size: a crop of the images

    def problem(self, value: float | int | bool, input_size: int) -> str | None:
        """Why the metric cannot run with ``value`` (of the right type), or None."""
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return f"must be {'greater than' if self.above else 'at least'} {self.low:g}"
        if self.even and value % 2:
            return "must be even"
        if self.within_input and value > input_size:
            return f"must be at most the images' side, data.input_size {input_size}"
        return None


@dataclass(frozen=True)
class MetricInfo:
    """What the workflow, the checks and the figures need to know about a metric."""

    name: str
    display: str
    kind: Kind
    family: str
    module: str  # file name in fewshot_core/metrics/, without .py
    settings: dict[str, Setting] = field(default_factory=dict)
    better: Literal["higher", "lower"] = "higher"  # which values mark a better architecture, ranked directly

    @property
    def defaults(self) -> dict:
        return {k: s.default for k, s in self.settings.items()}

    def sources(self) -> list[Path]:
        return [METRICS_DIR / f"{self.module}.py", *(METRICS_DIR / s for s in SHARED_SOURCES)]


_ENTRIES = [
    MetricInfo("gm", "gm", "vector", "gradient matching", "gradient_matching"),
    MetricInfo("gm_nas", "gm (GM-NAS)", "vector", "gradient matching", "gradient_matching"),
    MetricInfo("gradnorm", "gradnorm", "scalar", "saliency", "saliency"),
    MetricInfo("snip", "snip", "scalar", "saliency", "saliency"),
    MetricInfo("grasp", "grasp", "scalar", "saliency", "saliency",
               {"temperature": Setting(1.0, float, "softmax temperature of the loss", low=0, above=True)}),
    MetricInfo("synflow", "synflow", "scalar", "saliency", "synflow"),
    MetricInfo("jacobcov", "jacobcov", "scalar", "activation", "mellor",
               {"k": Setting(1e-5, float, "added to each eigenvalue before the log", low=0, above=True)}),
    MetricInfo("naswot", "naswot", "scalar", "activation", "mellor"),
    MetricInfo("ntk", "ntk", "scalar", "trainability", "tenas", better="lower"),  # a condition number
    MetricInfo("lr", "lr", "scalar", "expressivity", "tenas", {
        # batch norm in training mode needs two crops; a crop below 4 pixels vanishes in the reductions
        "crops": Setting(1000, int, "number of random crops fed through the network", low=2),
        "crop_size": Setting(4, int, "side of each crop in pixels (even: the stages halve it)", low=4, even=True,
                             within_input=True),
        "width": Setting(1, int, "channels of the thin twin the regions are counted on (0: the network itself)",
                         low=0),
    }),
    MetricInfo("nparams", "#params", "scalar", "baseline", "baselines"),
    MetricInfo("convs", "#convs", "scalar", "baseline", "baselines"),
    MetricInfo("random", "random", "none", "baseline", "baselines"),
]
#: Every metric by name, in the order the figures and tables show them.
CATALOG: dict[str, MetricInfo] = {m.name: m for m in _ENTRIES}


@dataclass(frozen=True)
class Control:
    """A split that a ranking study holds beside the metrics' trees to show what a split can do in its
    setting: scored by ``metric``, on a tree whose settings ``tree`` gives over the run's ``tree`` section."""

    name: str
    display: str
    metric: str
    tree: dict
    doc: str


#: The study's controls, by the name ``controls:`` gives them (docs/design.md §8).
CONTROLS: dict[str, Control] = {c.name: c for c in [
    Control("fewshot_nas", "Few-shot NAS", "random",
            {"policy": {"levels": [5]}, "edge_selection": "order", "edge_order": [0]},
            "Few-shot NAS's split (Zhao et al. 2021): edge 1<-0 into its five operations, one sub-supernet each"),
    Control("gmnas", "GM-NAS", "gm_nas", {"edge_selection": "mincut", "balanced": True},
            "GM-NAS's split (Hu et al. 2022): gm_nas scores, the edge of the lowest cut, balanced 2|3 cuts"),
    Control("structure", "by structure", "convs", {},
            "a split by structure: the convolutions of the split edge apart from the operations without weights"),
]}


def info(name: str) -> MetricInfo:
    """The catalogue entry of ``name``; a ``KeyError`` listing the known metrics otherwise."""
    if name not in CATALOG:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(CATALOG)}")
    return CATALOG[name]


def display_name(name: str) -> str:
    """The name a figure prints for ``name``: the paper's where it has one, a control's; a metric of the
    user's own, a combination or a schedule keeps its name from the configuration."""
    if name in CONTROLS:
        return CONTROLS[name].display
    return CATALOG[name].display if name in CATALOG else name
