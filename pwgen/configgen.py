"""Sites (and, for remote sites, their gathered facts) -> a Parsl configuration.

The generator writes Python source, `parsl_config.py`, and `pwgen run` loads that
very source: what the user reads is exactly what runs. Each executor is first
described as a `Call` (a constructor name and its keyword arguments), then
rendered into the module template.
"""

import importlib.util
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from pwgen import __version__
from pwgen.errors import ConfigError
from pwgen.sites import Site

# Where each name used in a generated config is imported from.
IMPORTS: Mapping[str, str] = {
    "Config": "parsl.config",
    "HighThroughputExecutor": "parsl.executors",
    "MPIExecutor": "parsl.executors",
    "FluxExecutor": "parsl.executors",
    "LocalProvider": "parsl.providers",
    "SingleNodeLauncher": "parsl.launchers",
    "SimpleLauncher": "parsl.launchers",
}

# Short enough that the first result does not wait 5 s for the first block
# (measured: 3.5 s to first result with 1 s, 7.8 s with Parsl's default 5 s).
STRATEGY_PERIOD = 1
DEFAULT_RUN_DIR = ".pwgen/runinfo"
_INDENT = "    "


@dataclass(frozen=True)
class Call:
    """A constructor call in the generated source: `name(**kwargs)`."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def names(self) -> set[str]:
        """Every constructor name used by this call and its nested calls."""
        found = {self.name}
        for value in self.kwargs.values():
            if isinstance(value, Call):
                found |= value.names()
        return found


@dataclass(frozen=True)
class ExecutorSource:
    label: str
    variable: str
    summary: str
    call: Call

    @property
    def code(self) -> str:
        return pyrepr(self.call)


def pyrepr(value: Any, depth: int = 0) -> str:
    """Python source for a literal or a `Call`, one keyword argument per line."""
    if isinstance(value, Call):
        if not value.kwargs:
            return f"{value.name}()"
        inner = _INDENT * (depth + 1)
        args = "".join(f"{inner}{k}={pyrepr(v, depth + 1)},\n" for k, v in value.kwargs.items())
        return f"{value.name}(\n{args}{_INDENT * depth})"
    return repr(value)


# ---------------------------------------------------------------- executors


def executor_for(site: Site) -> ExecutorSource:
    """The executor (and provider) a site gets; remote sites need facts (provisioning)."""
    if not site.is_local:
        raise ConfigError(
            f"site {site.label!r} ({site.scheduler}): no facts gathered for it yet; "
            "run `pwgen provision` first"
        )
    builders = {"htex": _local_htex, "mpi": _local_mpi, "flux": _local_flux}
    call = builders[site.executor](site)
    summary = f"{site.executor} on this machine ({site.scheduler} provider)"
    return ExecutorSource(site.label, f"site_{site.label}", summary, call)


def _local_provider(site: Site, launcher: str) -> Call:
    return Call(
        "LocalProvider",
        {
            "nodes_per_block": 1,
            "init_blocks": site.init_blocks,
            "min_blocks": site.min_blocks,
            "max_blocks": site.max_blocks,
            "launcher": Call(launcher),
            "worker_init": "\n".join(site.worker_init),
        },
    )


def _local_htex(site: Site) -> Call:
    kwargs: dict[str, Any] = {
        "label": site.label,
        # Workers on this machine: the interchange listens on loopback only.
        "address": "127.0.0.1",
        "encrypted": True,
        "cores_per_worker": site.cores_per_worker,
    }
    if site.max_workers_per_node is not None:
        kwargs["max_workers_per_node"] = site.max_workers_per_node
    kwargs["provider"] = _local_provider(site, "SingleNodeLauncher")
    return Call("HighThroughputExecutor", kwargs)


def _local_mpi(site: Site) -> Call:
    return Call(
        "MPIExecutor",
        {
            "label": site.label,
            "address": "127.0.0.1",
            # MPIExecutor defaults to unencrypted; pwgen keeps encryption on everywhere.
            "encrypted": True,
            "max_workers_per_block": site.max_workers_per_node or 1,
            "mpi_launcher": "mpiexec",
            # MPIExecutor requires SimpleLauncher: one worker pool per block.
            "provider": _local_provider(site, "SimpleLauncher"),
        },
    )


def _local_flux(site: Site) -> Call:
    return Call(
        "FluxExecutor",
        {"label": site.label, "provider": _local_provider(site, "SingleNodeLauncher")},
    )


# ---------------------------------------------------------------- module


def render_config(sites: Sequence[Site], *, source: str, run_dir: str = DEFAULT_RUN_DIR) -> str:
    """The text of a `parsl_config.py` that defines `config` for these sites."""
    executors = [executor_for(site) for site in sites]
    names = {"Config"}.union(*(e.call.names() for e in executors))
    by_module: dict[str, list[str]] = {}
    for name in sorted(names):
        by_module.setdefault(IMPORTS[name], []).append(name)
    return _template().render(
        version=__version__,
        source=source,
        labels=[site.label for site in sites],
        imports=sorted(by_module.items()),
        executors=executors,
        run_dir=run_dir,
        strategy_period=STRATEGY_PERIOD,
    )


def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pwgen", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # renders Python source, not HTML
    )
    env.filters["pyrepr"] = pyrepr
    return env.get_template("parsl_config.py.j2")


def load_config_module(path: Path) -> ModuleType:
    """Import a config file the way a user would, returning the module (with `config`)."""
    spec = importlib.util.spec_from_file_location(f"pwgen_config_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except Exception as err:  # a user-edited config may fail in any way
        raise ConfigError(f"{path}: cannot load config: {type(err).__name__}: {err}") from None
    if not hasattr(module, "config"):
        raise ConfigError(f"{path}: defines no `config`")
    sys.modules.setdefault(spec.name, module)
    return module
