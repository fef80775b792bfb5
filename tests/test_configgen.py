"""The generated parsl_config.py: readable, valid Python, and a real Parsl Config."""

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from facts_samples import COMPUTE, provisioned_facts
from parsl.config import Config
from parsl.executors import HighThroughputExecutor, MPIExecutor
from parsl.launchers import SimpleLauncher, SingleNodeLauncher
from parsl.providers import LocalProvider

from pwgen.configgen import Call, load_config_module, pyrepr, render_config
from pwgen.configgen.settings import Setting, Settings, SiteOrigin
from pwgen.errors import ConfigError
from pwgen.facts import write_facts
from pwgen.sites import SitesError, parse_sites

SITES = parse_sites(
    """\
sites:
  - {label: fast, scheduler: local, cores_per_worker: 0.5, max_workers_per_node: 3,
     max_blocks: 2, worker_init: ["export A=1", "export B='two'"]}
  - {label: wide, scheduler: local, executor: mpi, max_workers_per_node: 2}
"""
)
FLUX = parse_sites("sites:\n  - {label: flux_here, scheduler: local, executor: flux}\n")


def _load(tmp_path: Path, source: str) -> Config:
    path = tmp_path / "parsl_config.py"
    path.write_text(source)
    config = load_config_module(path).config
    assert isinstance(config, Config)
    return config


def test_every_local_executor_kind_becomes_the_parsl_class(tmp_path: Path) -> None:
    source = render_config(SITES, source="sites.yaml", run_dir="somewhere/runinfo")
    ast.parse(source)
    config = _load(tmp_path, source)
    fast, wide = config.executors
    assert config.run_dir == "somewhere/runinfo" and config.strategy_period == 1

    assert type(fast) is HighThroughputExecutor and fast.label == "fast"
    assert fast.address == "127.0.0.1" and fast.encrypted is True
    assert (fast.cores_per_worker, fast.max_workers_per_node) == (0.5, 3)
    assert isinstance(fast.provider, LocalProvider)
    assert isinstance(fast.provider.launcher, SingleNodeLauncher)
    assert fast.provider.max_blocks == 2
    assert fast.provider.worker_init == "export A=1\nexport B='two'"

    assert type(wide) is MPIExecutor and wide.encrypted is True
    assert wide.max_workers_per_block == 2
    assert isinstance(wide.provider.launcher, SimpleLauncher)


def test_flux_site_needs_flux_where_the_config_loads(tmp_path: Path) -> None:
    # FluxExecutor looks for `flux` on PATH when constructed; Flux is not installable here.
    source = render_config(FLUX, source="sites.yaml")
    assert "site_flux_here = FluxExecutor(\n    label='flux_here'," in source
    with pytest.raises(ConfigError, match="Cannot find Flux installation in PATH"):
        _load(tmp_path, source)


def test_module_is_readable(tmp_path: Path) -> None:
    source = render_config(SITES[:1], source="my/sites.yaml")
    assert "from my/sites.yaml" in source
    assert "# Site fast: htex on this machine" in source
    assert "site_fast = HighThroughputExecutor(\n    label='fast',\n" in source
    assert "executors=[site_fast]" in source
    # Only what is used gets imported.
    assert "MPIExecutor" not in source and "SimpleLauncher" not in source


def test_remote_site_without_facts_is_refused() -> None:
    remote = parse_sites("sites:\n  - {label: far, scheduler: slurm, host: h}\n")
    with pytest.raises(ConfigError, match=r"site 'far' \(slurm\): no facts .* `pwgen provision`"):
        render_config(remote, source="s")


def test_pyrepr_nests_calls() -> None:
    text = pyrepr(Call("A", {"x": 1, "b": Call("B", {"y": "z"}), "c": Call("C")}))
    assert text == "A(\n    x=1,\n    b=B(\n        y='z',\n    ),\n    c=C(),\n)"
    # A list holding calls (storage_access=[...]): one item a line; other lists as repr.
    listed = pyrepr(Call("A", {"s": [Call("B"), Call("C", {"x": 1})], "n": [1, 2]}))
    assert listed == (
        "A(\n    s=[\n        B(),\n        C(\n            x=1,\n        ),\n    ],\n"
        "    n=[1, 2],\n)"
    )
    assert Call("A", {"s": [Call("B", {"l": Call("L")})]}).names() == {"A", "B", "L"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x = (", "cannot load config: SyntaxError"),
        ("raise RuntimeError('boom')", "cannot load config: RuntimeError: boom"),
        ("value = 1", "defines no `config`"),
    ],
)
def test_broken_config_module_is_one_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "parsl_config.py"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config_module(path)


def test_settings_write_each_value_with_where_it_came_from() -> None:
    """Settings keep their order; a sites value reaches the source only as a literal."""
    hostile = 'echo "\'" ) # \\n; import os'
    site = parse_sites(
        "sites:\n  - label: s1\n    scheduler: slurm\n    host: h\n    max_blocks: 3\n"
        f"    account: proj7\n    worker_init: [{json.dumps(hostile)}]\n",
        source="sites.yaml",
    )[0]
    origin = SiteOrigin(site, "sites.yaml")
    settings = Settings()
    settings["label"] = Setting(site.label)
    settings.from_site(origin, "max_blocks", "min_blocks", "worker_init")
    settings.given(origin, "account", "qos")  # qos is not set: left out
    settings["walltime"] = origin.setting("walltime").noting("capped", "; ")
    source = pyrepr(settings.call("Provider"))
    assert source == (
        "Provider(\n"
        "    label='s1',\n"
        "    max_blocks=3,  # sites.yaml\n"
        "    min_blocks=0,  # default\n"
        f"    worker_init={(hostile,)!r},  # sites.yaml\n"
        "    account='proj7',  # sites.yaml\n"
        "    walltime='01:00:00',  # default; capped\n"
        ")"
    )
    call = ast.parse(source).body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    values = {kw.arg: ast.literal_eval(kw.value) for kw in call.value.keywords}
    assert values["worker_init"] == (hostile,) and list(values) == list(settings)


def _provisioned_state(tmp_path: Path, **facts: Any) -> Path:
    """A state dir as `pwgen provision` leaves it for site s1 (facts with `facts`)."""
    state = tmp_path / ".pwgen"
    (state / "facts").mkdir(parents=True)
    (state / "ssh").mkdir()
    (state / "ssh" / "config").write_text("Host s1\n")
    write_facts(state / "facts", "s1", provisioned_facts("s1", **facts))
    return state


def test_values_from_files_and_facts_stay_prose_in_the_generated_module(tmp_path: Path) -> None:
    """A sites path or a fact that looks like code ends up in comments and the docstring
    escaped: the module holds only what pwgen generated, and says the values as they are."""
    odd = 'we"""ird\\N{x} \u2028# → \''
    state = _provisioned_state(tmp_path, partitions=[{**COMPUTE, "name": odd}])
    sites = parse_sites("sites:\n  - {label: s1, scheduler: slurm, host: h}\n")
    source_path = f"/p/{odd}\nimport os; os.system('touch pwned')/sites.yaml"
    text = render_config(sites, source=source_path, state_dir=state)
    module = ast.parse(text)
    docstring = ast.get_docstring(module)
    assert docstring is not None and source_path in docstring  # said as it is, escaped
    kinds = {type(node).__name__ for node in module.body[1:]}
    assert kinds <= {"Import", "ImportFrom", "Assign", "Expr"}, kinds
    calls = [n for n in module.body[1:] if isinstance(n, ast.Expr)]
    assert [ast.unparse(n) for n in calls] == [], "a value became a statement"
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert any("ird" in line for line in comments)  # the partition is named in a comment


def test_relay_allow_reaches_the_executor_and_is_checked(tmp_path: Path) -> None:
    sites = parse_sites(
        "sites:\n  - {label: s1, scheduler: slurm, host: h, relay_allow: [10.1.0.0/16]}\n"
    )
    text = render_config(sites, source="sites.yaml", state_dir=_provisioned_state(tmp_path))
    assert "relay_allow=('10.1.0.0/16',),  # networks the relay serves" in text
    # Ordinary values read as they are: nothing escaped that did not need it.
    assert '"sites.yaml" = set in the sites file' in text and "\\" not in text
    with pytest.raises(SitesError, match=r"relay_allow.*'compute' is not a network"):
        parse_sites("sites:\n  - {label: s1, scheduler: slurm, host: h, relay_allow: [compute]}\n")
