"""Executors for provisioned remote sites (slurm, pbspro), built from their gathered facts.

What `pwgen provision` left in the state dir (`.pwgen/`): `facts/<label>.json` and
`ssh/config`. A site's executor is pwgen's `SiteHighThroughputExecutor` (or
`SiteMPIExecutor`) with an `SSHSlurmProvider` / `SSHPBSProProvider`; every argument
carries a comment saying whether it came from the sites file, pwgen's default or the
facts (partition limits, cores and memory per node, the env's activation script).
"""

from dataclasses import dataclass
from pathlib import Path

from pwgen.configgen.batch import (
    check_scheduler,
    drain_setting,
    node_shape,
    partition_setting,
    site_partition,
    walltime_setting,
    worker_init_setting,
)
from pwgen.configgen.flux import check_flux_site, flux_launcher, flux_settings
from pwgen.configgen.mpi import mpiexec_notes
from pwgen.configgen.settings import FACTS, Setting, Settings, SiteOrigin
from pwgen.configgen.source import Call, ExecutorSource, Ref
from pwgen.errors import ConfigError
from pwgen.facts import FactsError, Partition, SiteFacts, read_facts
from pwgen.layout import DEFAULT_STATE_DIR, StateLayout
from pwgen.sites import Site

#: pwgen's state directory (pwgen.layout): facts and ssh config live there.
STATE_DIR = DEFAULT_STATE_DIR
#: The module-level name of the ssh config path in a generated config.
SSH_CONFIG_NAME = "SSH_CONFIG"
#: Seconds a scheduler command may take on a site (Parsl's 10 s is too short over ssh).
REMOTE_CMD_TIMEOUT = 30
#: Manager heartbeats: Parsl's defaults (30 s, 120 s) notice a lost site after two
#: minutes; a tunnel repair takes a few seconds, well inside this threshold.
HEARTBEAT_PERIOD = 5
HEARTBEAT_THRESHOLD = 30
#: A site's executor class and what the config's comment calls it, by `executor:`.
EXECUTORS = {
    "htex": ("SiteHighThroughputExecutor", "HTEX"),
    "mpi": ("SiteMPIExecutor", "MPIExecutor"),
    "flux": ("SiteFluxExecutor", "HTEX (a Flux instance in each block)"),
}
#: Milliseconds the interchange's loop and the executor's result thread wait for a
#: message when idle; a message wakes them at once. Parsl's 10 ms costs about 0.7 % of a
#: core per site while nothing happens (bench/controller_idle.py).
POLL_PERIOD = 100


@dataclass(frozen=True)
class ProvisionedSite:
    """What `pwgen provision` left for a remote site: its facts and how to reach it."""

    facts: SiteFacts
    facts_file: Path
    ssh_config: Path
    env_path: str
    # The env's activation script (`pwgen-activate`, written by the pwgen.hpc.parsl_env role).
    activate: str


def provisioned_site(site: Site, state_dir: Path = STATE_DIR) -> ProvisionedSite:
    """Read a remote site's facts and ssh config from the state dir; one ConfigError if missing."""
    state = StateLayout(state_dir.resolve())
    path = state.facts_file(site.label)
    if not path.is_file():
        raise ConfigError(
            f"site {site.label!r} ({site.scheduler}): no facts gathered for it yet ({path}); "
            "run `pwgen provision` first"
        )
    try:
        facts = read_facts(state.facts_dir, site.label)
    except FactsError as err:
        raise ConfigError(str(err)) from None
    ssh_config = state.ssh_config
    if not ssh_config.is_file():
        raise ConfigError(f"{ssh_config}: no ssh config for the sites; run `pwgen provision` first")
    if facts.env_dir is None or facts.env_activate is None:
        raise ConfigError(
            f"{path}: site {site.label!r} has no Parsl env recorded; run `pwgen provision` again"
        )
    return ProvisionedSite(facts, path, ssh_config, facts.env_dir, facts.env_activate)


def remote_executor(site: Site, provisioned: ProvisionedSite | None, source: str) -> ExecutorSource:
    """The site executor of a provisioned remote site; a ConfigError says what is missing."""
    if provisioned is None:
        raise ConfigError(
            f"site {site.label!r} ({site.scheduler}): no facts gathered for it yet; "
            "run `pwgen provision` first"
        )
    facts = provisioned.facts
    check_scheduler(site, facts, provisioned.facts_file)
    for name in ("internal_address", "relay"):
        if getattr(facts, name) is None:
            raise ConfigError(
                f"{provisioned.facts_file}: no {name} for site {site.label!r}, so its workers "
                "cannot reach the controller; run `pwgen provision` again"
            )
    partition = site_partition(site, facts)
    origin = SiteOrigin(site, source)
    settings = Settings()
    settings["label"] = Setting(site.label)
    settings.update(_pool_settings(origin, partition))
    provider = _remote_provider(provisioned, partition, origin)
    settings.update(_tunnel_settings(site, facts, provider))
    launch = _pool_launch(facts)
    if launch is not None:
        settings["launch_cmd"] = launch
    settings["drain_period"] = drain_setting(walltime_setting(partition, origin).value)
    name, kind = EXECUTORS[site.executor]
    scheduler = "Slurm" if site.scheduler == "slurm" else "PBS Pro"
    summary = (
        f"{kind} here, workers on {scheduler} compute nodes behind {site.host} "
        f"(partition {partition.name})"
    )
    notes = provenance_notes(provisioned, source) + mpiexec_notes(site, facts)
    return ExecutorSource(site.label, f"site_{site.label}", summary, settings.call(name), notes)


def provenance_notes(provisioned: ProvisionedSite, source: str) -> tuple[str, ...]:
    """The lines above a remote executor: its facts, its env, and how to read the comments."""
    facts = provisioned.facts
    python = facts.python.version if facts.python else "unknown"
    return (
        f"facts: {provisioned.facts_file}",
        f"env: {provisioned.env_path} (Parsl {facts.parsl_version}, Python {python})",
        f'comments: "{source}" = set in the sites file, "default" = pwgen\'s default, '
        f'"{FACTS}" = gathered on the site',
    )


def _pool_settings(origin: SiteOrigin, partition: Partition) -> Settings:
    """What the site's worker pools run at once, by kind of executor."""
    if origin.site.executor == "mpi":
        return _mpi_settings(origin)
    if origin.site.executor == "flux":
        check_flux_site(origin.site)
        return flux_settings(origin, partition)
    return _htex_settings(origin)


def _mpi_settings(origin: SiteOrigin) -> Settings:
    site = origin.site
    settings = Settings()
    # MPI apps at once per block: each takes at least one whole node of the block.
    settings["max_workers_per_block"] = (
        Setting(site.max_workers_per_node, f"{origin.label}: max_workers_per_node")
        if site.max_workers_per_node is not None
        else Setting(site.nodes_per_block, "default: nodes_per_block, one app per node at most")
    )
    launcher = "srun" if site.scheduler == "slurm" else "mpiexec"
    settings["mpi_launcher"] = Setting(launcher, f"{site.scheduler}: $PARSL_MPI_PREFIX in apps")
    return settings


def _pool_launch(facts: SiteFacts) -> Setting | None:
    """Blocks start Parsl's worker pool lean through the env's Python (0.3 s sooner),
    when the site has pwgen_worker; else Parsl's launch command (None)."""
    python = facts.python.path if facts.python else ""
    if facts.worker_helpers is None or not python.startswith("/"):
        return None
    return Setting(
        Call("lean_worker_pool", {"python": python}),
        f"{FACTS}: the env's Python starts the pool without Parsl's package imports",
    )


def _htex_settings(origin: SiteOrigin) -> Settings:
    settings = Settings()
    settings.from_site(origin, "cores_per_worker")
    settings.given(origin, "max_workers_per_node")
    return settings


def _tunnel_settings(site: Site, facts: SiteFacts, provider: Call) -> Settings:
    """How the site's workers reach the interchange here, and the site's shared settings."""
    settings = Settings()
    # The interchange listens on loopback here; the site reaches it via the tunnel.
    settings["address"] = Setting("127.0.0.1", "loopback only: workers come through the tunnel")
    settings["encrypted"] = Setting(True, "CurveZMQ; certs copied to the site per run")
    settings["poll_period"] = Setting(POLL_PERIOD, "ms idle waits here; messages wake at once")
    settings["provider"] = Setting(provider)
    settings["ssh_config"] = Setting(Ref(SSH_CONFIG_NAME))
    settings["host"] = Setting(site.label, "Host alias in SSH_CONFIG")
    settings["internal_address"] = Setting(
        facts.internal_address, f"{FACTS}: login node as compute nodes see it"
    )
    settings["relay"] = Setting(facts.relay, f"{FACTS}: pwgen-relay on the login node")
    settings["remote_dir"] = Setting(facts.workdir, f"{FACTS}: workdir (per-run logs, certs)")
    if site.relay_allow:
        settings["relay_allow"] = Setting(site.relay_allow, "networks the relay serves")
    settings["storage_access"] = Setting(
        storage_access(site), "Files: file:// by rsync from here, the rest in the task"
    )
    settings["heartbeat_period"] = Setting(HEARTBEAT_PERIOD)
    settings["heartbeat_threshold"] = Setting(
        HEARTBEAT_THRESHOLD, "a lost site is noticed in seconds, not minutes"
    )
    return settings


def storage_access(site: Site) -> list[Call]:
    """How a site's tasks get their Files (docs/staging.md): `file://` paths of this
    machine and `zip:` members of archives here copied by rsync over the site's master;
    http(s), ftp, s3 and gs in the task (s3 with the site's `object_store`, its secret
    only by reference); any other scheme refused at the app call
    (`pwgen.staging.site_storage_access()`, written out)."""
    cloud = Call("CloudStaging")
    if site.object_store is not None:  # names the secret, never holds it
        store = site.object_store.model_dump(exclude_defaults=True)
        cloud = Call(
            "CloudStaging", {"object_store": store}, {"object_store": f"{site.label}: references"}
        )
    return [
        Call("SiteFileStaging"),
        Call("SiteZipStaging"),
        Call("HTTPInTaskStaging"),
        Call("FTPInTaskStaging"),
        cloud,
        Call("UnsupportedStaging"),
    ]


def _remote_provider(
    provisioned: ProvisionedSite, partition: Partition, origin: SiteOrigin
) -> Call:
    """The SSH provider of the site's scheduler: where its blocks go and what they hold."""
    site = origin.site
    walltime = walltime_setting(partition, origin)  # refused before any other setting
    if site.scheduler == "slurm":
        name, settings = "SSHSlurmProvider", _slurm_settings(partition, origin)
    else:
        name, settings = "SSHPBSProProvider", _pbspro_settings(partition, origin)
    settings.from_site(origin, "nodes_per_block", "init_blocks", "min_blocks", "max_blocks")
    settings["walltime"] = walltime
    settings["launcher"] = (
        flux_launcher(site, provisioned.facts, provisioned.env_path)
        if site.executor == "flux"
        else _launcher(site)
    )
    settings["worker_init"] = worker_init_setting(provisioned.activate, origin)
    settings["cmd_timeout"] = Setting(REMOTE_CMD_TIMEOUT, "seconds per scheduler command over ssh")
    settings["ssh_config"] = Setting(Ref(SSH_CONFIG_NAME))
    settings["host"] = Setting(site.label)
    workdir = provisioned.facts.workdir.rstrip("/")
    settings["remote_script_dir"] = Setting(f"{workdir}/scripts", f"{FACTS}: workdir")
    return settings.call(name)


def _slurm_settings(partition: Partition, origin: SiteOrigin) -> Settings:
    settings = Settings()
    settings["partition"] = partition_setting(partition, origin)
    settings.given(origin, "account", "qos", "constraint", "gres", "gpus_per_node")
    settings.update(node_shape(partition))
    settings.given(origin, "mem_per_node", "exclusive")  # the site's own beat the facts'
    _scheduler_options(settings, origin)
    return settings


def _scheduler_options(settings: Settings, origin: SiteOrigin, ours: tuple[str, ...] = ()) -> None:
    """pwgen's directive lines (`ours`), then the site's (a later one wins), in every
    block's batch script."""
    theirs = origin.site.scheduler_options
    if ours or theirs:
        source = " + ".join([*(["default"] if ours else []), *([origin.label] if theirs else [])])
        settings["scheduler_options"] = Setting("\n".join([*ours, *theirs]), source)


def _pbspro_settings(partition: Partition, origin: SiteOrigin) -> Settings:
    if origin.site.qos is not None:
        raise ConfigError(f"site {origin.site.label!r}: qos is a Slurm setting; PBS Pro has none")
    settings = Settings()
    settings["queue"] = partition_setting(partition, origin)
    settings.given(origin, "account")
    if partition.cpus_per_node:
        settings["cpus_per_node"] = Setting(
            partition.cpus_per_node, f"{FACTS}: queue {partition.name}"
        )
    site = origin.site
    chunk = [f"ngpus={site.gpus_per_node}"] if site.gpus_per_node else []
    chunk += [f"mem={site.mem_per_node}gb"] if site.mem_per_node else []
    if chunk:  # added to each chunk of the block's `-l select=`
        settings["select_options"] = Setting(":".join(chunk), origin.label)
    # A block's chunks (one per node) on distinct nodes: PBS's default place, free, may
    # put them all on one node that has the cpus of several.
    scatter = ("#PBS -l place=scatter",) if site.nodes_per_block > 1 else ()
    _scheduler_options(settings, origin, scatter)
    return settings


def _launcher(site: Site) -> Setting:
    """What starts the worker pools in a block, and why that one."""
    if site.executor == "mpi":
        return Setting(Call("SimpleLauncher"), "MPIExecutor: one worker pool per block")
    if site.nodes_per_block > 1:
        launcher = "SrunLauncher" if site.scheduler == "slurm" else "MpiExecLauncher"
        return Setting(Call(launcher), "a pool on every node of the block")
    return Setting(Call("SingleNodeLauncher"), "one node per block")
