"""Limits: names that become paths, values echoed in messages, a configuration's size, a download that fails."""

import io
import re
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from fewshot_core import data
from fewshot_core.checks import CONFIG_LIMIT, SCHEMA, load_settings, load_settings_or_exit
from fewshot_core.errors import DataError
from fewshot_core.outputs import BENCHMARK, CHECKPOINTS, LOG, OUTPUTS
from tests.conftest import ROOT, edited, load_scenario

pytestmark = pytest.mark.faults
TINY = load_scenario("tiny")
#: The file system's longest name (NAME_MAX), and the widest a process id can be (Linux's pid_max is at
#: most 2**22, seven digits); a chunk number has at most five (15,625 architectures or leaves at most).
NAME_MAX, PID, CHUNK = 255, "4194304", "99999"


def file_names_of_a_metric(name: str) -> list[str]:
    """Every file or folder name a metric's name goes into: the outputs (and the temporary name each is written
    under first, artifacts.write's ``.<name>.<pid>.tmp``), the checkpoints, and the logs and benchmarks the rules
    name."""
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    logs = [template.format(rule=rule, name=n) for rule, n in re.findall(r'(?:log|benchmark)_file\("(\w+)", "([^"]+)"\)',
                                                                          rules) for template in (LOG, BENCHMARK)]
    outputs = [o.template for o in OUTPUTS.values()]
    names = []
    for template in [*outputs, *CHECKPOINTS.values(), *logs]:
        for part in template.split("/"):
            if "{metric}" in part or "{proxy}" in part:
                filled = part.replace("{metric}", name).replace("{proxy}", name).replace("{chunk}", CHUNK)
                assert "{" not in filled, f"{part}: a wildcard beside the metric's name whose width is not known here"
                names.append(filled)
                if template in outputs and part == template.split("/")[-1]:
                    names.append(f".{filled}.{PID}.tmp")
    return names


def test_a_metric_name_as_long_as_the_schema_allows_fits_every_file_name_it_becomes(tmp_path):
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    longest = ("long_" + "abcdefghijklmnopqrstuvwxyz" * 8)[:schema["metrics"]["propertyNames"]["maxLength"]]
    names = file_names_of_a_metric(longest)
    assert max(len(n.encode()) for n in names) <= NAME_MAX, max(names, key=len)
    assert max(len(n) for n in names) > NAME_MAX - 40  # the bound is not far below what it protects
    assert schema["run"]["maxLength"] == NAME_MAX  # the run's name is a folder of its own: results/<run>/
    (tmp_path / "m.py").write_text("def score(model, batches):\n    return 1.0\n")
    load_settings({**TINY, "run": "r" * NAME_MAX, "metrics": {longest: {"function": "m.py:score", "kind": "scalar"},
                                                               "snip": {}}}, workdir=tmp_path)


def rejected(tmp_path, monkeypatch, cfg: dict | str) -> str:
    """The one line the workflow's check stops with, for ``cfg`` read back from its file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as stop:
        load_settings_or_exit(yaml.safe_load((tmp_path / "config.yaml").read_text()), ["config.yaml"])
    message = str(stop.value.code)
    assert message.startswith("Configuration error: ") and "Nothing was run" in message and "Traceback" not in message
    assert len(message) < 600 and message.count("\n") == 1, message  # the error's line, and what to do
    return message


@pytest.mark.parametrize("cfg,needle", [
    (edited(TINY, "run", "r" * 300), r"run: 'r{57}\.\.\.r{58}' \(300 characters\) is longer than 255 characters"),
    (edited(TINY, "metrics", {"m" * 260: {"batch_size": 8}}),
     r"metrics: the name 'm{57}\.\.\.m{58}' \(260 characters\) is longer than 200 characters"),
    (edited(TINY, "metrics", {"mix": {"combine": {"s" * 300: 1.0}}}), r"metrics.mix.combine: the name 's{57}"),
    (edited(TINY, "metrics", {"snip_" + "ab" * 20: {}}), r"metrics.snip_(ab){20}: a name that ends in 'ab' repeated 20 "
                                                        r"times is taken by Snakemake for a rule that makes its own"),
    (edited(TINY, "metrics", {"mine": {"function": "f" * 300 + ".py:score", "kind": "scalar"}}),
     r"metrics.mine.function: 'f{57}\.\.\.f+\.py:score' \(309 characters\) cannot be looked up as a file \(File name "
     r"too long\)"),
    (edited(edited(TINY, "data.name", "cifar10"), "data.root", "d" * 300),
     r"data.root: 'd{57}\.\.\.d{58}' \(300 characters\) holds a name of 300 bytes, more than the 255 a file system"),
    (edited(TINY, "metrics.grasp", {"settings": {"temperature": "t" * 10000}}),
     r"metrics.grasp.settings.temperature: 't{57}\.\.\.t{58}' \(10,000 characters\) is not a finite float"),
    (edited(TINY, "metrics", {"mine": {"function": "m.py:score", "kind": "scalar", "settings": {"table": "x" * 200000}}}),
     r"metrics.mine.settings: 200,013 bytes of settings for one scoring job of mine, whose settings reach it on its "
     r"command line \(at most 100,000 bytes of them\)"),
    (edited(TINY, "seeds", [0, 10**300]), r"seeds.1: 1000+\.\.\.0+ \(an integer of 301 digits\) is greater than the "
                                          r"maximum of 9223372036854775807"),
    (edited(TINY, "study.seed", 2**63), r"study.seed: 9223372036854775808 is greater than the maximum"),
    (edited(TINY, "run", list(range(100000))),
     r"run: \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\] \(a list of 100,000 entries\) is not of type 'string'"),
])
def test_a_name_too_long_for_a_path_or_a_long_value_is_one_short_line_naming_its_key(tmp_path, monkeypatch, cfg, needle):
    (tmp_path / "m.py").write_text("def score(model, batches, **settings):\n    return 1.0\n")
    assert re.search(needle, rejected(tmp_path, monkeypatch, cfg))


def alias_bomb(levels: int) -> str:
    """A configuration whose metric settings hold a list of nine aliases of a list of nine aliases ...
    ``levels`` deep: a few hundred bytes that expand to 9**levels values."""
    names = [f"l{i}" for i in range(levels)]
    lines = ["      l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"      {b}: &{b} [" + ", ".join([f"*{a}"] * 9) + "]" for a, b in zip(names, names[1:])]
    return yaml.safe_dump({k: v for k, v in TINY.items() if k != "metrics"}) + "\n".join(
        ["metrics:", "  snip: {}", "  mine:", "    function: m.py:score", "    kind: scalar", "    settings:", *lines]) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded_in_little_memory(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text("def score(model, batches, **settings):\n    return 1.0\n")
    tracemalloc.start()
    message = rejected(tmp_path, monkeypatch, alias_bomb(12))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = 4 * 9**12 + (9**12 - 1) // 8  # 9**12 strings of 3 characters, in lists of 9 nested 12 deep
    assert f"metrics.mine.settings.l11: {size:,} values and characters once its YAML aliases (*name) are " \
           f"followed, where a configuration may hold {CONFIG_LIMIT:,}" in message
    assert peak < 20 * 2**20, peak


def test_a_value_that_contains_itself_is_refused(tmp_path, monkeypatch):
    text = yaml.safe_dump({k: v for k, v in TINY.items() if k != "metrics"}) + (
        "metrics:\n  snip: {}\n  mine: {function: m.py:score, kind: scalar, settings: {loop: &loop [*loop]}}\n")
    assert "a value that contains itself" in rejected(tmp_path, monkeypatch, text)


class Junk(io.BytesIO):
    """A server's answer that is not the file asked for."""

    url, length = "http://example.invalid/file.gz", 4


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
@pytest.mark.parametrize("fetch", ["no network", "a wrong file"])
def test_a_download_that_fails_is_one_line_saying_how_to_place_the_files_and_leaves_nothing(tmp_path, monkeypatch,
                                                                                            dataset, fetch):
    def urlopen(request, *args, **kwargs):
        if fetch == "no network":
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return Junk(b"junk")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's own file")
    for root in (tmp_path / "new" / "data", tmp_path / "mine"):  # a folder made for it, and one of the user's
        with pytest.raises(DataError) as err:
            data.download(dataset, root)
        message = str(err.value)
        assert "\n" not in message and len(message) < 800 and "nothing of it was kept" in message
        assert "To place the files by hand, fetch" in message and str(root) in message
        assert ("name resolution" if fetch == "no network" else "corrupted") in message
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in (tmp_path / "mine").rglob("*")) == ["notes.txt"]


def test_a_download_interrupted_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM (a SystemExit in a job) during the download: the partial file goes with the staging folder."""
    def urlopen(request, *args, **kwargs):
        raise SystemExit(143)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(SystemExit):
        data.download("cifar10", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_download_that_succeeds_puts_its_files_where_the_loader_finds_them(tmp_path, monkeypatch):
    """What torchvision writes lands in root as it would have without the staging folder."""
    import torchvision

    def fetch(self):  # what torchvision's download leaves: the four files under FashionMNIST/raw
        raw = Path(self.raw_folder)
        raw.mkdir(parents=True)
        for part in data.FASHION_FILES.values():
            for name in part:
                (raw / name).write_bytes(b"")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", fetch)
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "_check_exists", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "_load_data", lambda self: (None, None))
    assert data.download("fashion_mnist", tmp_path / "fm")
    assert sorted(p.name for p in (tmp_path / "fm").iterdir()) == ["FashionMNIST"]
    assert all(data.fashion_file(tmp_path / "fm", n) for part in data.FASHION_FILES.values() for n in part)
