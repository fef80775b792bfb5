"""The site-side Parsl config of a `flux` site: a `FluxExecutor` that runs ON the login node.

Parsl's `FluxExecutor` cannot be driven from the controller (docs/flux.md): its client
finds `flux` on its own PATH, flux-core must sit at the same absolute
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

from pwgen import __version__
from pwgen.configgen import IMPORTS, STRATEGY_PERIOD, batch
from pwgen.configgen.remote import ProvisionedSite, provenance_notes
from pwgen.configgen.settings import FACTS, Setting, Settings, SiteOrigin
from pwgen.configgen.source import Call, ExecutorSource, pyrepr
from pwgen.errors import ConfigError
from pwgen.facts import Partition
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
    """`<env>/bin/flux`: where the pwgen.hpc.flux role installs flux-core (conda-forge)."""
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
    batch.check_scheduler(site, provisioned.facts, provisioned.facts_file)
    partition = batch.site_partition(site, provisioned.facts)
    settings = Settings()
    settings["label"] = Setting(site.label)
    settings["provider"] = Setting(
        _login_node_provider(provisioned, partition, SiteOrigin(site, source)),
        "plain Slurm: this config runs on the login node",
    )
    settings["flux_path"] = Setting(
        flux_path(provisioned), f"{FACTS}: flux-core in the pinned env (pwgen.hpc.flux role)"
    )
    settings["working_dir"] = Setting(
        f"{remote_dir.rstrip('/')}/flux", f"{FACTS}: workdir, shared with the compute nodes"
    )
    summary = (
        f"FluxExecutor on the login node of {site.host}, a Flux instance in one Slurm "
        f"block (partition {partition.name})"
    )
    notes = (
        "site-side: `pwgen run` ships the workflow and this file to the login node and runs",
        "them there with the pinned env's python (see docs/flux.md)",
        *provenance_notes(provisioned, source),
    )
    return ExecutorSource(
        site.label, f"site_{site.label}", summary, settings.call("FluxExecutor"), notes
    )


def _login_node_provider(
    provisioned: ProvisionedSite, partition: Partition, origin: SiteOrigin
) -> Call:
    """Parsl's SlurmProvider as the login node runs it: one block holding the Flux instance."""
    walltime = batch.walltime_setting(partition, origin)
    settings = Settings()
    settings["partition"] = batch.partition_setting(partition, origin)
    settings.given(origin, "account", "qos")
    settings["nodes_per_block"] = origin.setting("nodes_per_block").noting(
        "the one Flux instance spans them"
    )
    settings.update(batch.node_shape(partition))
    settings["walltime"] = walltime.noting("the block lives as long as the workflow", "; ")
    settings["launcher"] = Setting(
        Call("SrunLauncher", {"overrides": SRUN_OVERRIDES}),
        "one Flux broker per node, PMI-2 bootstrap, all of its CPUs",
    )
    settings["worker_init"] = batch.worker_init_setting(provisioned.activate, origin)
    settings["cmd_timeout"] = Setting(
        LOGIN_CMD_TIMEOUT, "seconds per Slurm command on the login node"
    )
    return settings.call("SlurmProvider")


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
