"""Sites (and, for remote sites, their gathered facts) -> a Parsl configuration.

The generator writes Python source, `parsl_config.py`, and `pwgen run` loads that
very source: what the user reads is exactly what runs. Each executor is first
described as a `Call` (a constructor name and its keyword arguments, each with an
optional comment saying where its value came from), then rendered into the module
template.

Remote sites (slurm, pbspro) need what `pwgen provision` left in the state dir
(`.pwgen/`): `facts/<label>.json` and `ssh/config`. Their executor is pwgen's
`SiteHighThroughputExecutor` (or `SiteMPIExecutor`) with an `SSHSlurmProvider` /
`SSHPBSProProvider`: plain Parsl classes whose start/shutdown bring the site's
tunnel, relay and certificates up and down, so the module works with `parsl.load`.

The package, one concept a module:

    source.py    Call, Ref, ExecutorSource, pyrepr: values rendered as Python source
    settings.py  Setting, Settings: each argument's value and where it came from
    local.py     executors for sites on this machine
    batch.py     a site's batch job settings (partition, walltime, node shape) from facts
    remote.py    provisioned remote sites: facts -> site executor and SSH provider
    flux.py      a Flux site's site-side config (FluxExecutor on the login node)
    mpi.py       whether a PBS Pro MPI site's mpiexec takes Parsl's prefix (facts `mpi`)
    __init__.py  executor_for, render_config (the module template), load_config_module
"""

import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import jinja2

from pwgen import __version__
from pwgen.configgen.local import local_executor
from pwgen.configgen.remote import (
    REMOTE_CMD_TIMEOUT,
    SSH_CONFIG_NAME,
    STATE_DIR,
    ProvisionedSite,
    provisioned_site,
    remote_executor,
)
from pwgen.configgen.settings import FACTS
from pwgen.configgen.source import (
    Call,
    ExecutorSource,
    Ref,
    comment_text,
    docstring_text,
    pyrepr,
)
from pwgen.errors import ConfigError
from pwgen.layout import StateLayout
from pwgen.sites import Site

__all__ = [
    "DEFAULT_RUN_DIR",
    "FACTS",
    "IMPORTS",
    "REMOTE_CMD_TIMEOUT",
    "SSH_CONFIG_NAME",
    "STATE_DIR",
    "STRATEGY_PERIOD",
    "Call",
    "ExecutorSource",
    "ProvisionedSite",
    "Ref",
    "executor_for",
    "load_config_module",
    "provisioned_site",
    "pyrepr",
    "render_config",
]

# Where each name used in a generated config is imported from.
IMPORTS: Mapping[str, str] = {
    "Config": "parsl.config",
    "HighThroughputExecutor": "parsl.executors",
    "MPIExecutor": "parsl.executors",
    "FluxExecutor": "parsl.executors",
    "LocalProvider": "parsl.providers",
    "SingleNodeLauncher": "parsl.launchers",
    "SimpleLauncher": "parsl.launchers",
    "SrunLauncher": "parsl.launchers",
    "MpiExecLauncher": "parsl.launchers",
    "SiteHighThroughputExecutor": "pwgen.executors",
    "SiteMPIExecutor": "pwgen.executors",
    "SiteFluxExecutor": "pwgen.executors",
    "lean_worker_pool": "pwgen.executors",
    "FluxInstanceLauncher": "pwgen.providers",
    "SSHSlurmProvider": "pwgen.providers",
    "SSHPBSProProvider": "pwgen.providers",
    "SiteFileStaging": "pwgen.staging",
    "SiteZipStaging": "pwgen.staging",
    "UnsupportedStaging": "pwgen.staging",
    "CloudStaging": "pwgen.staging",
    "HTTPInTaskStaging": "parsl.data_provider.http",
    "FTPInTaskStaging": "parsl.data_provider.ftp",
}

# Short enough that the first result does not wait 5 s for the first block
# (measured: 3.5 s to first result with 1 s, 7.8 s with Parsl's default 5 s).
STRATEGY_PERIOD = 1
DEFAULT_RUN_DIR = str(StateLayout().runinfo_dir)


def executor_for(
    site: Site, provisioned: ProvisionedSite | None = None, *, origin: str = "sites.yaml"
) -> ExecutorSource:
    """The executor (and provider) a site gets; remote sites need what provisioning wrote.

    `origin` names the sites source in the provenance comments.
    """
    if not site.is_local:
        return remote_executor(site, provisioned, origin)
    return local_executor(site)


def render_config(
    sites: Sequence[Site],
    *,
    source: str,
    run_dir: str = DEFAULT_RUN_DIR,
    state_dir: Path = STATE_DIR,
) -> str:
    """The text of a `parsl_config.py` that defines `config` for these sites.

    Remote sites read `<state_dir>/facts/<label>.json`; the module names the absolute
    `<state_dir>/ssh/config`, so it loads from any working directory.
    """
    origin = Path(source).name if source.endswith((".yaml", ".yml")) else "sites"
    executors = []
    ssh_config: Path | None = None
    for site in sites:
        if site.is_local:
            executors.append(executor_for(site, origin=origin))
            continue
        provisioned = provisioned_site(site, state_dir)
        ssh_config = provisioned.ssh_config
        executors.append(executor_for(site, provisioned, origin=origin))
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
        ssh_config_name=SSH_CONFIG_NAME,
        ssh_config=None if ssh_config is None else str(ssh_config),
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
    # Values quoted in comments and in the docstring stay inert there.
    env.filters["comment"] = comment_text
    env.filters["docstring"] = docstring_text
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
