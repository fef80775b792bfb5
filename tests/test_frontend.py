"""The front end at scale: what a command imports at start-up, and the fast paths of
reading sites.yaml (libyaml) and writing the inventory, which must not change a result
or a message (bench/frontend.py measures how fast they are)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from facts_samples import provisioned_facts, provisioned_project
from helpers import run_pwgen

from pwgen import inventory, yamlload
from pwgen.errors import SitesError
from pwgen.sites import parse_sites

# What no start-up may import: the steps' heavy modules, loaded by the command that runs.
NOT_AT_START_UP = (
    "parsl",
    "ansible_runner",
    "httpx",
    "jinja2",
    "pwgen.lab.lifecycle",
    "pwgen.lab.controller",
    "pwgen.lab.state",
    "pwgen.sites",
    "pwgen.ssh",
    "pwgen.configgen",
    "pwgen.provision",
    "pwgen.run",
)
_MODULES_AFTER = """\
import json, sys
sys.argv = ["pwgen", *sys.argv[1:]]
from pwgen.cli import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def _modules_after(*args: str, cwd: Path | None = None) -> set[str]:
    """The modules loaded once `pwgen ARGS` is done, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = done.stderr.rstrip().splitlines()[-1]
    assert last.startswith("MODULES "), done.stdout + done.stderr
    return set(json.loads(last.removeprefix("MODULES ")))


@pytest.mark.parametrize(
    "args", [("--version",), ("--help",), ("sites", "--help"), ("lab", "up", "--help")]
)
def test_start_up_imports_no_step(args: tuple[str, ...]) -> None:
    modules = _modules_after(*args)
    assert "pwgen.cli" in modules and "typer" in modules  # it ran
    loaded = [name for name in NOT_AT_START_UP if name in modules]
    assert not loaded, f"pwgen {' '.join(args)} imported {loaded}"


def test_a_command_still_imports_what_it_needs(tmp_path: Path) -> None:
    """The lab's modules, now imported in the commands, are there when a command runs."""
    assert "pwgen.lab.state" in _modules_after("lab", "status", "--state-dir", str(tmp_path))
    done = run_pwgen("lab", "status", "--state-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 2 and "no lab in" in done.stderr, done.stderr


SCHEDULERS = (("a", "slurm"), ("b", "pbspro"))


def test_config_and_inventory_write_parsl_code_without_importing_parsl(tmp_path: Path) -> None:
    """Parsl's import (0.5 s) is the run's: `pwgen config` only writes Python that uses
    it (for a Slurm and a PBS Pro site with their facts), `pwgen inventory` none."""
    provisioned_project(
        tmp_path, {label: provisioned_facts(label, scheduler=kind) for label, kind in SCHEDULERS}
    )
    for args, written in (
        (("config", "-o", "c.py"), "c.py"),
        (("inventory", "--from", "sites.yaml", "-o", "i.yml"), "i.yml"),
    ):
        modules = _modules_after(*args, cwd=tmp_path)
        assert (tmp_path / written).is_file(), f"pwgen {args[0]} wrote nothing"
        assert "parsl" not in modules, f"pwgen {args[0]} imported Parsl"


# ------------------------------------------------------------ sites.yaml via libyaml

SITE = "  - {label: s%d, scheduler: slurm, host: h%d, partition: compute}\n"
# Documents each path must read alike: plain, odd but valid, and every kind of problem.
DOCUMENTS = [
    "sites:\n" + "".join(SITE % (i, i) for i in range(3)),
    "sites:\r\n  - label: a\r\n    scheduler: local\r\n",  # CRLF
    "\ufeffsites:\n  - {label: a, scheduler: local}  # BOM, comment: é\n",
    "%YAML 1.1\n---\nsites:\n  - {label: a, scheduler: local}\n",
    "sites:\n  - label: a\n    scheduler: local\n    walltime: 01:00:00\n    port: 0x16\n",
    "s: &s {label: a, scheduler: local}\nsites: [*s, {<<: *s, label: b}]\n",
    "a: &a " + "[" * 30 + "1" + "]" * 30 + "\nsites: " + "[" * 30 + "*a" + "]" * 30 + "\n",
    "sites: " + "[" * 100 + "]" * 100 + "\n",  # deeper than 64: libyaml reads it, not we
    "sites:\n  - label: a\n    label: b\n",
    "sites: [\n",
    "sites:\n\t- a\n",
    "sites:\n  - {label: a\x85, scheduler: local}\n",
    "sites:\n  - {label: a\x07, scheduler: local}\n",
    "sites: !!python/object:os.system [x]\n",
    "sites:\n  - label: a\n    max_blocks: 2026-02-30\n",
    "a: &a [*a]\n",
    "--- 1\n--- 2\n",
    "",
    "# only a comment\n",
    "a: b: c\n",
]


def _read(text: str) -> tuple[Any, list[int]] | str:
    """What load_yaml reads (the data and every node's line), or its one-line error."""
    try:
        data, root = yamlload.load_yaml(text, "s.yaml", SitesError)
    except SitesError as err:
        return str(err)
    return data, _lines(root)


def _lines(root: yaml.Node | None) -> list[int]:
    lines, stack, seen = [], [root] if root else [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        lines.append(node.start_mark.line)
        stack.extend(yamlload._children(node))
    return lines


@pytest.mark.parametrize("text", DOCUMENTS)
def test_libyaml_reads_as_the_python_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    read = _read(text)
    monkeypatch.setattr(yamlload, "_FastLoader", None)  # the pure-Python path only
    assert _read(text) == read


def test_libyaml_path_is_taken_and_python_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A good file never reaches the Python parser; a bad one is reported by it."""
    assert yamlload._FastLoader is not None, "PyYAML without libyaml: the slow path only"
    good = "sites:\n" + "".join(SITE % (i, i) for i in range(3))
    bad = "sites:\n  - label: a\n    scheduler: local\n    scheduler: slurm\n"
    python_loader = yamlload._Loader

    class Refused(python_loader):  # type: ignore[misc, valid-type]
        def __init__(self, text: str) -> None:
            raise AssertionError("the Python path read a good file")

    monkeypatch.setattr(yamlload, "_Loader", Refused)
    assert [site.label for site in parse_sites(good)] == ["s0", "s1", "s2"]
    monkeypatch.setattr(yamlload, "_Loader", python_loader)
    with pytest.raises(SitesError, match=r"^s\.yaml:4: duplicate key 'scheduler'$"):
        parse_sites(bad, source="s.yaml")


def test_validation_errors_name_the_line_from_libyaml_nodes() -> None:
    text = "sites:\n" + "".join(SITE % (i, i) for i in range(5)) + "  - {label: x}\n"
    with pytest.raises(SitesError, match=r"^s\.yaml:7: sites\[5\]\.scheduler: required"):
        parse_sites(text, source="s.yaml")


def test_inventory_text_is_the_python_emitters(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "sites:\n"
        "  - {label: a, scheduler: slurm, host: h.example.org, user: 'al.ice', port: 2222,"
        " identity_file: '~/.ssh/id key', proxy_jump: 'b@jump:22,c@[::1]:23',"
        " partition: compute, account: 'p-1', walltime: '1-00:00:00', cores_per_worker: 0.5,"
        " worker_init: ['module load python/3.11', 'export A=\"x y\"', \"echo 'é'\"],"
        " env: {method: conda, python: python3.11, extra_packages: ['numpy>=1.26', 'yes']},"
        " ssh_options: {Compression: 'yes'}}\n"
        "  - {label: b, scheduler: pbspro, host: 10.0.0.1, partition: 'null', max_blocks: 3}\n"
        "  - {label: c, scheduler: local, executor: mpi}\n"
    )
    sites = parse_sites(text)
    fast = inventory.render_inventory(sites, "sites.yaml")
    monkeypatch.setattr(inventory, "_DUMPER", yaml.SafeDumper)
    assert inventory._DUMPER is not getattr(yaml, "CSafeDumper", None)
    assert fast == inventory.render_inventory(sites, "sites.yaml")
