"""The site-side Parsl config of a `flux` site: a `FluxExecutor` that runs ON the login node.

Parsl's `FluxExecutor` cannot be driven from the controller (DESIGN.md, "FluxExecutor
facts"): its client finds `flux` on its own PATH, flux-core must sit at the same absolute
path wherever the client and the Flux instance run, its working directory must be on a
filesystem the compute nodes share, and it listens on a random port that the Flux
instance on the compute nodes connects back to. So the whole workflow runs on the
site's login node (`pwgen.flux` ships it there), and its config is plain Parsl:

    FluxExecutor(label, provider=SlurmProvider(...), flux_path=<env>/bin/flux,
                 working_dir=<workdir>/<run id>/flux)

The provider is Parsl's ordinary `SlurmProvider` (it runs `sbatch` on the login node
itself, no ssh): one block of `nodes_per_block` nodes, in which `SrunLauncher` starts one
Flux broker per node (`flux start`, bootstrapped over Slurm's PMI-2), and Flux then
schedules every app inside that allocation.

Every value comes from the sites file, pwgen's defaults or the facts `pwgen provision`
gathered, and says so in a comment, as in the controller-side config.
"""

import shlex
from typing import Any

from pwgen import __version__
from pwgen.configgen import IMPORTS, STRATEGY_PERIOD
from pwgen.configgen.remote import FACTS, ProvisionedSite, _from_site, _walltime, node_shape
from pwgen.configgen.source import Call, ExecutorSource, pyrepr
from pwgen.errors import ConfigError
from pwgen.sites import Site

#: Where the names a site-side config uses come from (the controller's map + the plain
#: Slurm provider, which controller-side configs never use).
FLUX_IMPORTS = {**IMPORTS, "SlurmProvider": "parsl.providers"}
#: srun options of the block: Flux bootstraps its brokers over Slurm's PMI-2, and each
#: broker (one task per node) gets every CPU of its node (srun of Slurm 22.05 to 23.02
#: does not inherit the job's --cpus-per-task).
SRUN_OVERRIDES = "--mpi=pmi2 --cpus-per-task=$SLURM_CPUS_ON_NODE"
#: Seconds a Slurm command may take on a busy login node (Parsl's default is 10).
LOGIN_CMD_TIMEOUT = 30


def flux_path(provisioned: ProvisionedSite) -> str:
    """`<env>/bin/flux`: where the pwgen_flux role installs flux-core (conda-forge)."""
    return f"{provisioned.env_path.rstrip('/')}/bin/flux"


def flux_executor(
    site: Site, provisioned: ProvisionedSite, *, remote_dir: str, source: str = "sites.yaml"
) -> ExecutorSource:
    """The FluxExecutor of a flux site, for a run whose directory on the site is `remote_dir`.

    `remote_dir` must be on the filesystem the login and compute nodes share (a directory
    under the facts' `workdir`). `source` names the sites file in the comments.
    """
    if site.executor != "flux":
        raise ConfigError(f"site {site.label!r} uses executor {site.executor}, not flux")
    if site.scheduler != "slurm":
        raise ConfigError(
            f"site {site.label!r}: pwgen runs Flux sites on Slurm clusters only "
            f"(this one is {site.scheduler}); give it `executor: htex` or `mpi`"
        )
    facts = provisioned.facts
    where = str(provisioned.facts_file)
    if facts.scheduler != site.scheduler:
        raise ConfigError(
            f"{where}: site {site.label!r} is {site.scheduler} in the sites file but the "
            f"facts say {facts.scheduler}; run `pwgen provision` again"
        )
    partition = facts.partition(site.partition)
    if partition is None:
        known = ", ".join(p.name for p in facts.partitions) or "none"
        raise ConfigError(
            f"site {site.label!r}: partition {site.partition!r} is not on the site "
            f"(partitions: {known})"
        )
    walltime, walltime_from = _walltime(site, partition, source)
    provider: dict[str, Any] = {}
    comments: dict[str, str] = {}
    provider["partition"] = partition.name
    comments["partition"] = source if site.partition else f"{FACTS}: default partition"
    for key in ("account", "qos"):
        if getattr(site, key) is not None:
            provider[key] = getattr(site, key)
            comments[key] = source
    provider["nodes_per_block"] = site.nodes_per_block
    comments["nodes_per_block"] = (
        f"{_from_site(site, 'nodes_per_block', source)}: the one Flux instance spans them"
    )
    node_shape(partition, provider, comments)
    provider["walltime"] = walltime
    comments["walltime"] = f"{walltime_from}; the block lives as long as the workflow"
    provider["launcher"] = Call("SrunLauncher", {"overrides": SRUN_OVERRIDES})
    comments["launcher"] = "one Flux broker per node, PMI-2 bootstrap, all of its CPUs"
    worker_init = [f". {shlex.quote(provisioned.activate)}", *site.worker_init]
    provider["worker_init"] = "\n".join(worker_init)
    comments["worker_init"] = f"{FACTS}: env activation" + (
        f" + {source}" if site.worker_init else ""
    )
    provider["cmd_timeout"] = LOGIN_CMD_TIMEOUT
    comments["cmd_timeout"] = "seconds per Slurm command on the login node"

    kwargs: dict[str, Any] = {
        "label": site.label,
        "provider": Call("SlurmProvider", provider, comments),
        "flux_path": flux_path(provisioned),
        "working_dir": f"{remote_dir.rstrip('/')}/flux",
    }
    executor_comments = {
        "provider": "plain Slurm: this config runs on the login node",
        "flux_path": f"{FACTS}: flux-core in the pinned env (pwgen_flux role)",
        "working_dir": f"{FACTS}: workdir, shared with the compute nodes",
    }
    python = facts.python.version if facts.python else "unknown"
    summary = (
        f"FluxExecutor on the login node of {site.host}, a Flux instance in one Slurm "
        f"block (partition {partition.name})"
    )
    notes = (
        "site-side: `pwgen run` ships the workflow and this file to the login node and runs",
        "them there with the pinned env's python (see docs/flux.md)",
        f"facts: {provisioned.facts_file}",
        f"env: {provisioned.env_path} (Parsl {facts.parsl_version}, Python {python})",
        f'comments: "{source}" = set in the sites file, "default" = pwgen\'s default, '
        f'"{FACTS}" = gathered on the site',
    )
    return ExecutorSource(
        site.label,
        f"site_{site.label}",
        summary,
        Call("FluxExecutor", kwargs, executor_comments),
        notes,
    )


def render_flux_config(
    site: Site, provisioned: ProvisionedSite, *, remote_dir: str, source: str = "sites.yaml"
) -> str:
    """The text of the `parsl_config.py` a flux site's run loads on its login node.

    Its Parsl run directory is `<remote_dir>/runinfo`. The module puts the directory of
    the Python that imports it (the pinned env's `bin/`, which holds `flux`) first on
    PATH: Flux's client looks for `flux` there.
    """
    executor = flux_executor(site, provisioned, remote_dir=remote_dir, source=source)
    names = {"Config"} | executor.call.names()
    by_module: dict[str, list[str]] = {}
    for name in sorted(names):
        by_module.setdefault(FLUX_IMPORTS[name], []).append(name)
    imports = "".join(
        f"from {module} import {', '.join(found)}\n" for module, found in sorted(by_module.items())
    )
    notes = "".join(f"#   {note}\n" for note in executor.notes)
    run_dir = pyrepr(f"{remote_dir.rstrip('/')}/runinfo")
    return f'''"""Site-side Parsl configuration for the Flux site {site.label}.

Generated by pwgen {__version__} from {source} for one run. It runs on the login node
of {site.label}, with the pinned env's python, next to the workflow:

    import parsl
    from parsl_config import config

    parsl.load(config)

Apps pick the site by its executor label: @python_app(executors=["{site.label}"]).
"""

import os
import sysconfig

{imports}
# Flux's client runs `flux` from PATH: put the scripts directory of this Python (the
# pinned env's bin/, where flux-core is installed) first.
os.environ["PATH"] = sysconfig.get_path("scripts") + os.pathsep + os.environ.get("PATH", "")

# Site {site.label}: {executor.summary}
{notes}{executor.variable} = {executor.code}

config = Config(
    executors=[{executor.variable}],
    run_dir={run_dir},
    strategy_period={STRATEGY_PERIOD},
)
'''
