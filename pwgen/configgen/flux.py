"""What a Flux site's executor adds to an HTEX site's: every block is one Flux instance.

    SiteFluxExecutor(..., max_workers_per_node=<Flux jobs a block runs at once>,
        provider=SSHSlurmProvider(..., launcher=FluxInstanceLauncher(flux=<site's flux>)))

The block starts one Flux broker per node over Slurm's PMI-2 and runs the worker pool
inside the instance; apps with FluxExecutor's resource keys run as its jobs
(pwgen.executors.flux, docs/flux.md). Slurm only: a Flux instance over a PBS Pro block
needs a bootstrap pwgen does not generate.
"""

from pwgen.configgen.settings import FACTS, Setting, Settings, SiteOrigin
from pwgen.configgen.source import Call
from pwgen.errors import ConfigError
from pwgen.facts import Partition, SiteFacts
from pwgen.siteflux import DEFAULT_SRUN_ARGS
from pwgen.sites import Site


def check_flux_site(site: Site) -> None:
    """Flux sites are Slurm sites (one ConfigError line otherwise)."""
    if site.scheduler != "slurm":
        raise ConfigError(
            f"site {site.label!r}: pwgen runs Flux sites on Slurm clusters only "
            f"(this one is {site.scheduler}); give it `executor: htex` or `mpi`"
        )


def flux_command(site: Site, facts: SiteFacts, env_path: str) -> Setting:
    """The `flux` the blocks run, and where that path comes from."""
    found = facts.flux
    if found is not None and found.command is not None:
        return Setting(found.command, f"{FACTS}: flux {found.version or '(version unknown)'}")
    if site.flux is not None and site.flux.path is not None:
        return Setting(f"{site.flux.path.rstrip('/')}/bin/flux", f"{site.label}: flux.path")
    env = env_path.rstrip("/")
    return Setting(f"{env}/bin/flux", f"{FACTS}: flux-core in the pinned env (pwgen.hpc.flux)")


def flux_settings(origin: SiteOrigin, partition: Partition) -> Settings:
    """The pool's worker count: how many apps (Flux jobs or plain) a block runs at once."""
    site = origin.site
    settings = Settings()
    settings.from_site(origin, "cores_per_worker")
    if site.max_workers_per_node is not None:
        settings.given(origin, "max_workers_per_node")
    elif partition.cpus_per_node:
        cores = partition.cpus_per_node * site.nodes_per_block
        settings["max_workers_per_node"] = Setting(
            cores, f"{FACTS}: every core of the block (the pool runs on its first node)"
        )
    return settings


def flux_launcher(site: Site, facts: SiteFacts, env_path: str) -> Setting:
    """The block's launcher: one Flux instance over its nodes, the pool inside."""
    flux = flux_command(site, facts, env_path)
    found = facts.flux
    srun_args = found.srun_args if found and found.srun_args is not None else DEFAULT_SRUN_ARGS
    call = Call("FluxInstanceLauncher", {"flux": flux.value, "srun_args": list(srun_args)})
    return Setting(call, f"one Flux instance per block; flux from {flux.source}")
