"""The configuration, checked before any job runs and turned into :class:`RunSettings`.

The schema (``workflow/schemas/config.schema.yaml``) gives every default and the allowed values;
the checks here add what a schema cannot say (the tree against the cell's edges, metric settings
against the catalogue, the dataset on disk). Every message names the key. Light on purpose (no
torch): the workflow calls :func:`load_settings` while it parses.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fewshot_core import user_metrics
from fewshot_core.catalog import CATALOG, CONTROLS
from fewshot_core.errors import ConfigError, SplitError, cut, shown
from fewshot_core.plan import RunSettings
from fewshot_core.settings import (
    DataSettings,
    EvalSettings,
    GroundTruthSettings,
    MetricSettings,
    OptimizerSettings,
    Scorer,
    StudySettings,
    SupernetSettings,
    TrainSettings,
    TreeMetric,
    TreeSettings,
)
from fewshot_core.splitting import branching_factors

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
#: Training images of each dataset (before the validation holdout), known without loading it; the digits
#: keep four in five of their 1,797 images (every fifth is the test part), CIFAR-10 has 50,000.
#: Fashion-MNIST's count is read from its labels file's header (60,000 in the official files).
TRAIN_IMAGES = {"digits": 1437, "fashion_mnist": 60000, "cifar10": 50000, "synthetic": 512}
#: NAS-Bench-201's architectures whose cell connects its input to its output (341 of 15,625 do not).
CONNECTED = 15284
#: Kendall's tau and Spearman's rho need three architectures to say anything (two give +1 or -1).
MIN_STUDY_ARCHS = 3
CIFAR_LAYOUTS = ("cifar-10-batches-bin", "cifar-10-batches-py")
#: The stride-2 stages halve the image twice: a side that is not a multiple of 4 breaks the ResNet blocks.
INPUT_MULTIPLE = 4
#: The most a configuration may hold, written out with its YAML aliases (``*name``) followed: one per value,
#: plus each string's characters. The default configuration holds 257, the paper's 410; an alias nested
#: nine deep in nine copies of itself holds hundreds of millions, which every later step (the schema, a
#: message) would go through in full.
CONFIG_LIMIT = 1_000_000
#: What a file system holds: a name of 255 bytes, a path of 4,095 (Linux's NAME_MAX and PATH_MAX).
NAME_MAX, PATH_MAX = 255, 4095
#: The most a scoring job's metric settings may take, written as JSON: the job gets its spec as one
#: command-line argument, which Linux holds to 131,072 bytes (MAX_ARG_STRLEN); the rest of a spec takes a
#: few thousand.
SPEC_SETTINGS_MAX = 100_000
#: A name that ends in one part repeated 20 times: Snakemake takes such a wildcard value for a rule that
#: matches its own output (its PeriodicWildcardError) and builds no DAG.
PERIODIC = re.compile(r"(.+?)\1{19,}$")


@functools.cache
def _validator():
    """A JSON-schema validator that fills defaults, takes integers only as ints and numbers only finite
    (made once: the workflow validates the configuration and each of its parts)."""
    from jsonschema import Draft202012Validator, validators

    def is_integer(_checker, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def is_number(_checker, value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": is_integer, "number": is_number})
    base = validators.extend(Draft202012Validator, type_checker=checker)
    properties = base.VALIDATORS["properties"]

    def fill_defaults(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from properties(validator, props, instance, schema)

    return validators.extend(base, {"properties": fill_defaults})(
        yaml.load(SCHEMA.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))  # noqa: S506 (safe)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def expanded_sizes(config: object) -> dict[int, int]:
    """The size of every list, mapping and value in ``config`` written out in full (one per value, plus each
    string's characters; a mapping's keys included), by ``id``: each object is sized once however often it is
    referred to, so that an alias nested in copies of itself is measured without being expanded.
    :class:`ConfigError` for a value that contains itself."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[object, bool]] = [(config, False)]
    while stack:
        value, done = stack.pop()
        children = ([*value.keys(), *value.values()] if isinstance(value, dict) else
                    list(value) if isinstance(value, (list, tuple)) else None)
        if children is None:
            sizes[id(value)] = 1 + (len(value) if isinstance(value, str) else 0)
        elif done:
            sizes[id(value)] = 1 + sum(sizes[id(c)] for c in children)
            open_.discard(id(value))
        elif id(value) in open_:
            raise ConfigError("the configuration holds a value that contains itself (a YAML alias, *name, inside "
                              "the value its anchor, &name, marks): write it out")
        elif id(value) not in sizes:
            open_.add(id(value))
            stack.append((value, True))
            stack += [(c, False) for c in children if id(c) not in sizes]
    return sizes


def check_size(config: dict) -> None:
    """:class:`ConfigError` naming the deepest key whose value is over :data:`CONFIG_LIMIT` once its aliases
    are followed, measured without following them (:func:`expanded_sizes`)."""
    sizes = expanded_sizes(config)
    total = sizes[id(config)]
    if total <= CONFIG_LIMIT:
        return
    path, node = [], config
    while isinstance(node, dict):
        key, value = max(node.items(), key=lambda kv: sizes[id(kv[1])])
        if sizes[id(value)] <= CONFIG_LIMIT:
            break
        path.append(cut(key, 40))
        node = value
    raise ConfigError(f"{_key(path)}: {sizes[id(node)]:,} values and characters once its YAML aliases (*name) are "
                      f"followed, where a configuration may hold {CONFIG_LIMIT:,}; refused before it is expanded. "
                      "Write the value out, or give it in fewer copies")


def validated(config: dict) -> dict:
    """A copy of ``config`` with the schema's defaults filled in; :class:`ConfigError` naming the key
    of the first value the schema rejects (a value too large to go through first: :func:`check_size`),
    the value shown cut to a readable length."""
    check_size(config)
    config = copy.deepcopy(config)
    errors = sorted(_validator().iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        message = err.message.replace(repr(err.instance), shown(err.instance))
        if err.validator == "maxLength":  # a name that goes into file names, or a path
            message = (f"{'the name ' if 'propertyNames' in err.schema_path else ''}{shown(err.instance)} is longer than "
                       f"{err.validator_value} characters" + (", the most that every file name it becomes part of can "
                                                              "hold" if err.validator_value <= NAME_MAX else ""))
        elif err.validator == "type" and isinstance(err.instance, float) and "number" in str(err.validator_value):
            message = f"{err.instance!r} is not a finite number"
        elif err.validator == "type" and err.validator_value == "integer" and isinstance(err.instance, float):
            message = f"{err.instance!r} is not an integer (write it without a decimal point)"
        elif err.validator == "type" and isinstance(err.instance, str) and "string" not in str(err.validator_value):
            message = (f"{message}. A --config override is read as text, except for plain numbers: give "
                       "booleans, lists and mappings in a configuration file (--configfile)")
        raise ConfigError(f"{_key(err.absolute_path)}: {message}")
    return config


def _has_type(value, want: type) -> bool:
    """True when a configuration value is of the setting's type (an int is a float; a bool is neither)."""
    if want is bool or isinstance(value, bool):
        return want is bool and isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, want)


def _builtin(name: str, entry: dict, input_size: int, where: str | None = None) -> MetricSettings:
    """A catalogue metric with an entry's batches and settings; ``where``: the entry's key (``metrics.<name>``)."""
    where = where or f"metrics.{name}"
    declared = CATALOG[name].settings
    settings = dict(entry["settings"])
    for key, value in settings.items():
        if key not in declared:
            raise ConfigError(f"{where}.settings.{key}: {name} has no such setting; "
                              f"its settings: {', '.join(declared) or 'none'}")
        want = declared[key].type
        if not _has_type(value, want):
            raise ConfigError(f"{where}.settings.{key}: {shown(value)} is not a finite {want.__name__} "
                              f"({declared[key].help})")
        problem = declared[key].problem(value, input_size)
        if problem:
            raise ConfigError(f"{where}.settings.{key}: {shown(value)} {problem} ({declared[key].help})")
    return MetricSettings(name, CATALOG[name].kind, entry["batch_size"], entry["batches"],
                          {**CATALOG[name].defaults, **settings}, None)


def _user(name: str, entry: dict, workdir: Path) -> MetricSettings:
    if name in CATALOG:
        raise ConfigError(f"metrics.{name}: a metric of your own needs a name of its own; {name} is a built-in")
    if entry.get("kind") not in ("scalar", "vector"):
        raise ConfigError(f"metrics.{name}.kind: say whether {entry['function']} returns a float (scalar) or a "
                          "(batches, D) tensor (vector)")
    for key, value in entry["settings"].items():
        if not (isinstance(value, (bool, str)) or _has_type(value, float)):
            raise ConfigError(f"metrics.{name}.settings.{key}: {shown(value)} is not a finite number, a bool or a string")
    try:
        user_metrics.check(name, entry["function"], entry["settings"], workdir)
    except OSError as err:  # a name longer than the file system holds, a folder that cannot be read
        raise ConfigError(f"metrics.{name}.function: {shown(entry['function'])} cannot be looked up as a file "
                          f"({err.strerror})") from None
    return MetricSettings(name, entry["kind"], entry["batch_size"], entry["batches"], dict(entry["settings"]),
                          entry["function"])


def _metrics(entries: dict, written: dict, tree: dict, given_tree: dict, input_size: int,
             workdir: Path) -> dict[str, TreeMetric]:
    """Every configured metric as a tree's scorers: a built-in or the user's function (or a built-in under
    another name, ``metric:``), a combination of them, or a schedule of those, one per level; components
    not configured take the entry defaults. Each tree takes the run's ``tree`` section, or its own
    (``metrics.<name>.tree``, over the run's). ``written``: the entries as the configuration gives them,
    before the schema's defaults; ``tree``, ``given_tree``: the run's tree section with and without them."""
    defaults = validated({"run": "x", "seeds": [0], "metrics": {"x": {}}})["metrics"]["x"]
    for name, entry in entries.items():
        periodic = PERIODIC.search(name)
        if periodic:
            raise ConfigError(f"metrics.{name}: a name that ends in {periodic.group(1)!r} repeated "
                              f"{len(periodic.group(0)) // len(periodic.group(1))} times is taken by Snakemake for a "
                              "rule that makes its own input; rename it")
        kinds = [k for k in ("function", "combine", "schedule", "metric") if k in entry]
        if len(kinds) > 1:
            raise ConfigError(f"metrics.{name}: {' and '.join(kinds)} exclude each other")
        if kinds and kinds[0] in ("combine", "schedule", "metric"):
            if name in CATALOG:
                raise ConfigError(f"metrics.{name}: a {kinds[0]} needs a name of its own; {name} is a built-in "
                                  "metric, and its trees would carry another metric's splits")
        if kinds and kinds[0] in ("combine", "schedule"):
            unused = sorted(set(written.get(name) or {}) - {kinds[0], "tree"})
            if unused:
                raise ConfigError(f"metrics.{name}.{unused[0]}: a {kinds[0]} takes only {kinds[0]}: (and tree:); its "
                                  "components' batches and settings are their own entries' (metrics.<component>)")
        if kinds and kinds[0] == "metric" and entry["metric"] not in CATALOG:
            raise ConfigError(f"metrics.{name}.metric: {entry['metric']!r} is not a metric of the catalogue; known: "
                              f"{', '.join(CATALOG)}")
        for key in ("kind", "better"):
            if key in entry and "function" not in entry:
                raise ConfigError(f"metrics.{name}.{key} is only for a metric of your own (function: ...)")
        if entry.get("better") and entry.get("kind") == "vector":
            raise ConfigError(f"metrics.{name}.better: a vector metric ranks no architecture by its values; "
                              "better is for a scalar metric")
        if not kinds and name not in CATALOG:
            raise ConfigError(f"metrics.{name}: unknown metric; known: {', '.join(CATALOG)} (or give your own "
                              "with function:, combine:, schedule: or metric:)")

    def part(name: str, where: str) -> MetricSettings:
        entry = entries.get(name, defaults)
        if "function" in entry:
            return _user(name, entry, workdir)
        if "metric" in entry:
            return _builtin(entry["metric"], entry, input_size, f"metrics.{name}")
        if name in CATALOG and not ({"combine", "schedule"} & set(entry)):
            return _builtin(name, entry, input_size)
        raise ConfigError(f"{where}: {shown(name)} is not a metric of the catalogue or one of your own (function:)")

    def scorer(name: str, where: str) -> Scorer:
        entry = entries.get(name, defaults)
        if "schedule" in entry:
            raise ConfigError(f"{where}: {shown(name)} is a schedule; a schedule's entries are metrics or combinations")
        if "combine" not in entry:
            return Scorer((part(name, where),), (1.0,), False)
        combine = entry["combine"]
        parts = tuple(part(c, f"metrics.{name}.combine.{c}") for c in combine)
        for p in parts:
            if p.kind == "none":
                raise ConfigError(f"metrics.{name}.combine.{p.name}: {p.name} has no values to combine")
        return Scorer(parts, tuple(float(w) for w in combine.values()), True)

    trees = {}
    for name, entry in entries.items():
        own = (written.get(name) or {}).get("tree")
        shape, balanced = _tree(*_tree_of(tree, given_tree, own), f"metrics.{name}.tree" if own else "tree")
        levels = len(shape.factors)
        if "schedule" in entry:
            schedule = entry["schedule"]
            if len(schedule) != levels:
                raise ConfigError(f"metrics.{name}.schedule: {len(schedule)} entries for a tree of {levels} levels; "
                                  "give one metric per level")
            scorers = tuple(scorer(m, f"metrics.{name}.schedule[{i}]") for i, m in enumerate(schedule))
        else:
            scorers = (scorer(name, f"metrics.{name}"),) * levels
        trees[name] = TreeMetric(name, scorers, shape, balanced)
    return trees


def _tree_of(tree: dict, given: dict, own: dict | None) -> tuple[dict, dict]:
    """A tree's section and the keys given for it: the run's, with ``own`` (an entry's or a control's) over it.
    A tree that names its own edge selection does not inherit the run's edge order."""
    if not own:
        return tree, given
    if "edge_selection" in own:
        default = validated({"run": "x", "seeds": [0], "metrics": {"x": {}}})["tree"]["edge_order"]
        tree, given = {**tree, "edge_order": default}, {k: v for k, v in given.items() if k != "edge_order"}
    return {**tree, **own}, {**given, **own}


def _controls(names: list[str], entries: dict, tree: dict, given_tree: dict, input_size: int,
              trees: dict[str, TreeMetric]) -> dict[str, TreeMetric]:
    """The study's controls (:data:`fewshot_core.catalog.CONTROLS`) as trees of their own shapes; a control's
    metric takes its entry's settings when the configuration has one, the defaults otherwise."""
    defaults = validated({"run": "x", "seeds": [0], "metrics": {"x": {}}})["metrics"]["x"]
    out = {}
    for name in names:
        if name in trees:
            raise ConfigError(f"controls: {name!r} is also a metric's name under metrics:; rename the metric")
        control = CONTROLS[name]
        shape, balanced = _tree(*_tree_of(tree, given_tree, control.tree), f"controls: {name}'s tree")
        scorer = Scorer((_builtin(control.metric, entries.get(control.metric, defaults), input_size),), (1.0,), False)
        out[name] = TreeMetric(name, (scorer,) * len(shape.factors), shape, balanced, control=True)
    return out


def _study(study: dict, data_name: str, workdir: Path) -> StudySettings:
    """The study's settings: ``archs: all`` is every connected architecture, and a benchmark ground truth is
    checked (path, layout, dataset, budget, set, its files) before any job."""
    from fewshot_core import benchmark
    from fewshot_core.nb201 import study_set

    g = study["ground_truth"]
    _check_path("study.ground_truth.path", g["path"])
    truth = GroundTruthSettings(g["source"], g["path"], g["dataset"], str(g["hp"]), g["accuracy"])
    archs = study["archs"]
    if archs == "all" or archs > CONNECTED:
        if archs != "all":
            raise ConfigError(f"study.archs: {archs} is more than the {CONNECTED} architectures whose cell connects "
                              "its input to its output; use all for every one of them")
        archs = CONNECTED
    if archs == CONNECTED and not truth.benchmark:
        raise ConfigError(f"study.archs: {study['archs']} would train every architecture from scratch; it needs a "
                          "ground truth that costs nothing (study.ground_truth.source: nats_bench), or fewer")
    settings = StudySettings(**{k: v for k, v in study.items() if k not in ("runtime_min", "ground_truth", "archs")},
                             archs=archs, ground_truth=truth)
    if truth.benchmark and archs > 0:
        benchmark.check(truth.path, truth.dataset, truth.hp, truth.accuracy, data_name,
                        study_set(archs, settings.seed)[0], workdir)
    return settings


def _proxies(trees: dict[str, TreeMetric], entries: dict, input_size: int) -> dict[str, MetricSettings]:
    """The metrics that also rank the study's architectures directly, at initialisation: every tree's own
    scalar metric (not a combination, a schedule or a grouping without values), and the parameter count."""
    out = {}
    for tree in trees.values():
        scorer = tree.levels[0]
        if all(level == scorer for level in tree.levels) and not scorer.combined and scorer.kind == "scalar":
            out[scorer.parts[0].name] = scorer.parts[0]
    if "nparams" not in out:
        out["nparams"] = _builtin("nparams", entries.get("nparams") or validated(
            {"run": "x", "seeds": [0], "metrics": {"nparams": {}}})["metrics"]["nparams"], input_size)
    return out


def _directions(proxies: dict[str, MetricSettings], entries: dict) -> dict[str, int]:
    """Per training-free ranking: +1 when higher values mark a better architecture, -1 when lower ones do (a
    catalogue metric's own direction, ``better:`` for a metric of the user's, higher when not given)."""
    better = {p: CATALOG[p].better if p in CATALOG else entries[p].get("better", "higher") for p in proxies}
    return {p: -1 if b == "lower" else 1 for p, b in better.items()}


def _train(section: dict, optimizer: OptimizerSettings, crop_pad: int, precision: str) -> TrainSettings:
    return TrainSettings(section["epochs"], section["batch_size"], section["mode"], section["augment"], crop_pad,
                         precision, optimizer)


def _tree(tree: dict, given: dict, where: str = "tree") -> tuple[TreeSettings, bool]:
    """A tree's settings and whether its cuts are balanced; ``given`` is its section as written, before the
    defaults, and ``where`` its key in the configuration."""
    try:
        factors = tuple(branching_factors(tree["policy"]))
    except SplitError as err:
        raise ConfigError(f"{where}.policy: {err}") from err
    order = tuple(tree["edge_order"])
    if tree["edge_selection"] == "order":
        if len(order) < len(factors) or len(set(order[: len(factors)])) < len(factors):
            raise ConfigError(f"{where}.edge_order: {list(order)} must name {len(factors)} distinct edges (0-5), one "
                              f"per level, for edge_selection 'order' (an edge splits once along a path)")
        order = order[: len(factors)]
    elif "edge_order" in given:
        raise ConfigError(f"{where}.edge_order is only used with edge_selection 'order', not "
                          f"{tree['edge_selection']!r}")
    else:
        order = ()
    shape = TreeSettings(factors, tree["edge_selection"], order)
    _check_reachable(shape, where)
    return shape, tree["balanced"]


def _check_path(key: str, path: str | None) -> None:
    """:class:`ConfigError` naming ``key`` when ``path`` is longer than a file system's paths, or one of its
    names longer than its names (:data:`NAME_MAX`, :data:`PATH_MAX`)."""
    if path is None:
        return
    long = next((part for part in path.split("/") if len(part.encode()) > NAME_MAX), None)
    if long is not None:
        raise ConfigError(f"{key}: {shown(path)} holds a name of {len(long.encode())} bytes, more than the {NAME_MAX} "
                          "a file system holds")
    if len(path.encode()) > PATH_MAX:
        raise ConfigError(f"{key}: {shown(path)} is {len(path.encode())} bytes long, more than the {PATH_MAX} a file "
                          "system holds")


def _check_data(data: DataSettings, download: bool, workdir: Path) -> None:
    _check_path("data.root", data.root)
    if data.input_size % INPUT_MULTIPLE:
        raise ConfigError(f"data.input_size: {data.input_size} is not a multiple of {INPUT_MULTIPLE} "
                          "(the network halves the image twice)")
    if data.name == "fashion_mnist" and download and not data.root:
        raise ConfigError("data.root: data.download: true needs the folder to put Fashion-MNIST in (the default, "
                          "Debian's /usr/share/datasets/fashion-mnist, is the package's to fill)")
    if data.name == "cifar10" and not download:
        root = workdir / (data.root or "")
        if not data.root or not any((root / d).is_dir() for d in CIFAR_LAYOUTS):
            raise ConfigError(
                f"data.root: CIFAR-10 not found in {str(root)!r}: expected {' or '.join(CIFAR_LAYOUTS)} there; "
                "extract the archive into it or set data.download: true")


def _fashion_train_images(data: DataSettings, workdir: Path, download: bool) -> int:
    """The number of Fashion-MNIST training images, from the labels file's header; every file found and
    its header read (the whole of each is checked by the job that loads it), else the key named. Files not
    there yet that ``data.download`` will fetch count as the official 60,000."""
    from fewshot_core.data import read_idx_header
    from fewshot_core.data_files import FASHION_FILES, FASHION_ROOT, fashion_file
    from fewshot_core.errors import DataError

    root = workdir / (data.root or FASHION_ROOT)
    try:
        for part in FASHION_FILES.values():
            for name in part:
                fashion_file(root, name)
        return read_idx_header(fashion_file(root, FASHION_FILES["train"][1]), "labels")[0]
    except DataError as err:
        if download:
            return TRAIN_IMAGES[data.name]
        raise ConfigError(f"data.root: {err}") from None


def cuda_devices() -> int:
    """How many NVIDIA GPUs this machine has, read without importing torch (the driver's /proc entries,
    else ``nvidia-smi -L``)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        return len(list(gpus.iterdir()))
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        return sum(line.startswith("GPU ") for line in proc.stdout.splitlines()) if proc.returncode == 0 else 0
    return 0


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        found = cuda_devices()
        if index >= found:
            raise ConfigError(f"device: {device!r} asks for GPU {index}, and this machine has {found} GPU(s); "
                              "use device: auto (the GPU when there is one) or cpu")


def _writable(path: Path) -> bool:
    """True when ``path`` can be created or written: its nearest existing ancestor is a writable folder (and
    the path is one the file system can hold)."""
    try:
        p = path.resolve()
        while not p.exists():
            p = p.parent
        return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    except OSError:  # ENAMETOOLONG: the run's folder is deeper than the file system's paths
        return False


def load_settings(config: dict, workdir: str | os.PathLike = ".", local: bool = True) -> RunSettings:
    """The run's settings; :class:`ConfigError` naming the key for any value that would fail a job.
    ``local``: the jobs run on this machine, so a GPU asked for must be here (a cluster's jobs run
    elsewhere, and each checks its own node when it parses the workflow there)."""
    c = validated(config)
    if local:
        _check_device(c["device"])
    d, t = c["data"], c["training"]
    data = DataSettings(d["name"], d["root"], d["input_size"], d["val_fraction"], d["train_images"])
    _check_data(data, d["download"], Path(workdir))
    optimizer = OptimizerSettings(**t["optimizer"])
    leaves = t["leaves"]
    crop_pad = d["input_size"] // 8 if d["crop_pad"] is None else d["crop_pad"]
    given_tree = config.get("tree") or {}
    metrics = _metrics(c["metrics"], config.get("metrics") or {}, c["tree"], given_tree, d["input_size"],
                       Path(workdir))
    metrics.update(_controls(c["controls"], c["metrics"], c["tree"], given_tree, d["input_size"], metrics))
    proxies = _proxies(metrics, c["metrics"], d["input_size"])
    # A CPU trains in float32 whatever training.precision says: with device: cpu the training specs say
    # float32, so the setting reruns nothing there (docs/design.md §10, precision_note for device: auto).
    precision = "float32" if c["device"] == "cpu" else t["precision"]
    settings = RunSettings(
        run=c["run"],
        seeds=tuple(c["seeds"]),
        data=data,
        supernet=SupernetSettings(c["supernet"]["C"], c["supernet"]["N"]),
        device=c["device"],
        download=d["download"],
        metrics=metrics,
        warmup=_train(t["warmup"], optimizer, crop_pad, precision),
        leaf_training=_train(leaves, optimizer, crop_pad, precision),
        evaluation=EvalSettings(leaves["archs"], leaves["bn_batches"], leaves["eval_batch_size"]),
        leaves_per_job=leaves["leaves_per_job"],
        study=_study(c["study"], d["name"], Path(workdir)),
        proxies=proxies,
        directions=_directions(proxies, c["metrics"]),
    )
    _check_sizes(settings, config, workdir)
    _check_arguments(settings)
    results = Path(workdir, "results", settings.run)
    if not _writable(results):
        raise ConfigError(f"run: the output directory {results} cannot be written")
    return settings


def _check_sizes(s: RunSettings, config: dict, workdir: str | os.PathLike = ".") -> None:
    """Every count that a job would find too large for the data, rejected before any job."""
    n = (_fashion_train_images(s.data, Path(workdir), s.download) if s.data.name == "fashion_mnist"
         else TRAIN_IMAGES[s.data.name])
    if s.data.train_images is not None:
        if s.data.train_images > n:
            raise ConfigError(f"data.train_images: {s.data.train_images} is more than the {n} training images of "
                              f"{s.data.name}")
        n = s.data.train_images
    n_val = int(round(n * s.data.val_fraction))
    if not 0 < n_val < n:
        raise ConfigError(f"data.val_fraction: {s.data.val_fraction} of the {n} training images of {s.data.name} "
                          f"leaves {'no validation' if n_val == 0 else 'no training'} image")
    n_train = n - n_val
    for tree in s.metrics.values():
        for scorer in tree.levels:
            for part in scorer.parts:
                need = part.batch_size * part.batches
                if need > n_train:
                    key = "batch_size" if part.name in (config.get("metrics") or {}) else "batch_size (the default)"
                    raise ConfigError(f"metrics.{part.name}.{key}: {part.batches} batch(es) of {part.batch_size} need "
                                      f"{need} images; the training part of {s.data.name} has {n_train} "
                                      f"(data.val_fraction {s.data.val_fraction})")
    if 0 < s.study.archs < MIN_STUDY_ARCHS:
        raise ConfigError(f"study.archs: {s.study.archs} architectures cannot be ranked (Kendall's tau and Spearman's "
                          f"rho need at least {MIN_STUDY_ARCHS}); use 0 for no study")


def _check_arguments(s: RunSettings) -> None:
    """A scoring job's metric settings (every component's, for a combination) small enough for its spec to be
    one command-line argument (:data:`SPEC_SETTINGS_MAX`); else the key of the largest."""
    for tree in s.metrics.values():
        for scorer in tree.levels:
            sizes = {p.name: len(json.dumps(p.settings, default=str).encode()) for p in scorer.parts}
            if sum(sizes.values()) > SPEC_SETTINGS_MAX:
                name = max(sizes, key=sizes.get)
                raise ConfigError(f"metrics.{name}.settings: {sum(sizes.values()):,} bytes of settings for one scoring "
                                  f"job of {tree.name}, whose settings reach it on its command line (at most "
                                  f"{SPEC_SETTINGS_MAX:,} bytes of them); give your metric large data in a file it "
                                  "reads")


def _check_reachable(tree: TreeSettings, where: str) -> None:
    """With a fixed edge per level, a level that splits an edge into five groups puts ``none`` alone in one
    of them; when those edges cut every path of the cell, some leaf holds no connected architecture,
    whatever the metric says. (Splits that isolate ``none`` by the metric's choice fail in the split job.)"""
    from fewshot_core.nb201 import EDGES, NUM_EDGES, NUM_OPS, reaches_output

    if tree.edge_selection != "order":
        return
    alone = [e for e, b in zip(tree.edge_order, tree.factors) if b == NUM_OPS]
    if alone and not reaches_output([e not in alone for e in range(NUM_EDGES)]):
        raise ConfigError(f"{where}.policy: {NUM_OPS} groups on edges {', '.join(EDGES[e] for e in alone)} "
                          f"({where}.edge_order) leave a leaf whose only operation on each of them is 'none', so no "
                          "architecture of that leaf connects the cell's input to its output; use fewer groups on "
                          "one of these edges, or split another edge")


def check_duplicate_keys(paths: list[str | os.PathLike]) -> None:
    """:class:`ConfigError` naming the key and both lines when a configuration file gives a key twice
    (YAML keeps the last silently)."""

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{key_node.start_mark.name}: the key {shown(key)} is given twice, on lines "
                                  f"{seen[key] + 1} and {key_node.start_mark.line + 1}; keep one")
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    for path in paths:
        try:
            with open(path) as fh:
                yaml.load(fh, Loader=Strict)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError:
            continue  # Snakemake reports a malformed file itself


def precision_note(c: dict, local: bool) -> str | None:
    """The start's line when ``training.precision`` asks for TF32 or bfloat16 with ``device: auto`` on a
    machine that runs the jobs and has no GPU: they train in float32, yet the setting stays in the training
    specs (``auto`` would use it on a GPU), so changing it reruns them. None otherwise. ``c``: the
    configuration with its defaults (:func:`validated`)."""
    precision = c["training"]["precision"]
    if not local or c["device"] != "auto" or precision == "float32" or cuda_devices() > 0:
        return None
    return (f"training.precision: {precision} has no effect on this machine, which has no GPU: its jobs train in "
            "float32. It is a setting of the training jobs (device: auto would use it on a GPU), so changing it "
            "reruns the warm-up, leaf, one-shot and ground-truth training and what is made from them; with "
            "device: cpu it is left out of them.")


def load_settings_or_exit(config: dict, files: list, local: bool = True) -> tuple[RunSettings, dict]:
    """For the workflow: the settings and the configuration with its defaults, or the error's message
    on standard error and exit status 1 (a configuration mistake is not a crash: no traceback).
    ``files``: the configuration files it was read from."""
    try:
        check_duplicate_keys(files)
        settings, filled = load_settings(config, local=local), validated(config)
        note = precision_note(filled, local)
        if note:
            print(note, file=sys.stderr)
        return settings, filled
    except ConfigError as err:
        sys.exit(f"Configuration error: {err}\nNothing was run. Fix the value in the configuration file "
                 "(or the --config override) and start again.")
