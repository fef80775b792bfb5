"""Executors for provisioned remote sites (slurm, pbspro), built from their gathered facts.

What `pwgen provision` left in the state dir (`.pwgen/`): `facts/<label>.json` and
`ssh/config`. A site's executor is pwgen's `SiteHighThroughputExecutor` (or
`SiteMPIExecutor`) with an `SSHSlurmProvider` / `SSHPBSProProvider`; every argument
carries a comment saying whether it came from the sites file, pwgen's default or the
facts (partition limits, cores and memory per node, the env's activation script).
"""

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwgen.configgen.source import Call, ExecutorSource, Ref
from pwgen.errors import ConfigError
from pwgen.facts import FactsError, Partition, SiteFacts, facts_path, read_facts
from pwgen.layout import DEFAULT_STATE_DIR, StateLayout
from pwgen.sites import Site

#: pwgen's state directory (pwgen.layout): facts and ssh config live there.
STATE_DIR = DEFAULT_STATE_DIR
#: The module-level name of the ssh config path in a generated config.
SSH_CONFIG_NAME = "SSH_CONFIG"
#: Seconds a scheduler command may take on a site (Parsl's 10 s is too short over ssh).
REMOTE_CMD_TIMEOUT = 30
FACTS = "facts"
#: Manager heartbeats: Parsl's defaults (30 s, 120 s) notice a lost site after two
#: minutes; a tunnel repair takes a few seconds, well inside this threshold.
HEARTBEAT_PERIOD = 5
HEARTBEAT_THRESHOLD = 30


@dataclass(frozen=True)
class ProvisionedSite:
    """What `pwgen provision` left for a remote site: its facts and how to reach it."""

    facts: SiteFacts
    facts_file: Path
    ssh_config: Path
    env_path: str
    # The env's activation script (`pwgen-activate`, written by the pwgen_parsl_env role).
    activate: str


def provisioned_site(site: Site, state_dir: Path = STATE_DIR) -> ProvisionedSite:
    """Read a remote site's facts and ssh config from the state dir; one ConfigError if missing."""
    state = StateLayout(state_dir.resolve())
    directory = state.facts_dir
    path = facts_path(directory, site.label)
    if not path.is_file():
        raise ConfigError(
            f"site {site.label!r} ({site.scheduler}): no facts gathered for it yet ({path}); "
            "run `pwgen provision` first"
        )
    try:
        facts = read_facts(directory, site.label)
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (FactsError, OSError, ValueError) as err:
        raise ConfigError(str(err)) from None
    ssh_config = state.ssh_config
    if not ssh_config.is_file():
        raise ConfigError(f"{ssh_config}: no ssh config for the sites; run `pwgen provision` first")
    env = raw.get("env") if isinstance(raw.get("env"), dict) else {}
    env_path = str(env.get("path") or facts.env_path or "")
    if not env_path:
        raise ConfigError(
            f"{path}: site {site.label!r} has no Parsl env recorded; run `pwgen provision` again"
        )
    activate = str(env.get("activate") or f"{env_path}/bin/activate")
    return ProvisionedSite(facts, path, ssh_config, env_path, activate)


def _from_site(site: Site, name: str, label: str) -> str:
    """Provenance of a site setting: given in the sites source, or its default."""
    return label if name in site.model_fields_set else "default"


def remote_executor(site: Site, provisioned: ProvisionedSite | None, source: str) -> ExecutorSource:
    """The site executor of a provisioned remote site; a ConfigError says what is missing."""
    if site.executor == "flux":
        # Flux's client must run next to flux-core with a shared working directory and
        # listens on a random port: a controller-side DFK cannot drive it (DESIGN.md,
        # "FluxExecutor facts"). Such sites are run on their login node instead.
        raise ConfigError(
            f"site {site.label!r} uses executor flux: a Flux site runs its workflow on its own "
            "login node (site-side), not from a controller-side parsl_config.py; "
            "give it `executor: htex` or `mpi` to use it from here"
        )
    if provisioned is None:
        raise ConfigError(
            f"site {site.label!r} ({site.scheduler}): no facts gathered for it yet; "
            "run `pwgen provision` first"
        )
    facts = provisioned.facts
    where = f"{provisioned.facts_file}"
    if facts.scheduler != site.scheduler:
        raise ConfigError(
            f"{where}: site {site.label!r} is {site.scheduler} in the sites file but the "
            f"facts say {facts.scheduler}; run `pwgen provision` again"
        )
    for name in ("internal_address", "relay"):
        if getattr(facts, name) is None:
            raise ConfigError(
                f"{where}: no {name} for site {site.label!r}, so its workers cannot reach "
                "the controller; run `pwgen provision` again"
            )
    partition = facts.partition(site.partition)
    if partition is None:
        known = ", ".join(p.name for p in facts.partitions) or "none"
        raise ConfigError(
            f"site {site.label!r}: partition {site.partition!r} is not on the site "
            f"(partitions: {known})"
        )
    provider = _remote_provider(site, provisioned, partition, source)
    kwargs: dict[str, Any] = {"label": site.label}
    comments: dict[str, str] = {}
    if site.executor == "mpi":
        name = "SiteMPIExecutor"
        # MPI apps at once per block: each takes at least one whole node of the block.
        kwargs["max_workers_per_block"] = site.max_workers_per_node or site.nodes_per_block
        comments["max_workers_per_block"] = (
            f"{source}: max_workers_per_node"
            if site.max_workers_per_node is not None
            else "default: nodes_per_block, one app per node at most"
        )
        kwargs["mpi_launcher"] = "srun" if site.scheduler == "slurm" else "mpiexec"
        comments["mpi_launcher"] = f"{site.scheduler}: $PARSL_MPI_PREFIX in apps"
    else:
        name = "SiteHighThroughputExecutor"
        kwargs["cores_per_worker"] = site.cores_per_worker
        comments["cores_per_worker"] = _from_site(site, "cores_per_worker", source)
        if site.max_workers_per_node is not None:
            kwargs["max_workers_per_node"] = site.max_workers_per_node
            comments["max_workers_per_node"] = source
    kwargs.update(
        {
            # The interchange listens on loopback here; the site reaches it via the tunnel.
            "address": "127.0.0.1",
            "encrypted": True,
            "provider": provider,
            "ssh_config": Ref(SSH_CONFIG_NAME),
            "host": site.label,
            "internal_address": facts.internal_address,
            "relay": facts.relay,
            "remote_dir": facts.workdir,
            "storage_access": storage_access(),
            "heartbeat_period": HEARTBEAT_PERIOD,
            "heartbeat_threshold": HEARTBEAT_THRESHOLD,
        }
    )
    comments.update(
        {
            "address": "loopback only: workers come through the tunnel",
            "encrypted": "CurveZMQ; certs copied to the site per run",
            "host": "Host alias in SSH_CONFIG",
            "internal_address": f"{FACTS}: login node as compute nodes see it",
            "relay": f"{FACTS}: pwgen-relay on the login node",
            "remote_dir": f"{FACTS}: workdir (per-run logs, certs)",
            "storage_access": "Files: file:// by rsync from here, the rest in the task",
            "heartbeat_threshold": "a lost site is noticed in seconds, not minutes",
        }
    )
    kind = "MPIExecutor" if site.executor == "mpi" else "HTEX"
    scheduler = "Slurm" if site.scheduler == "slurm" else "PBS Pro"
    summary = (
        f"{kind} here, workers on {scheduler} compute nodes behind {site.host} "
        f"(partition {partition.name})"
    )
    python = facts.python.version if facts.python else "unknown"
    notes = (
        f"facts: {provisioned.facts_file}",
        f"env: {provisioned.env_path} (Parsl {facts.parsl_version}, Python {python})",
        f'comments: "{source}" = set in the sites file, "default" = pwgen\'s default, '
        f'"{FACTS}" = gathered on the site',
    )
    return ExecutorSource(
        site.label, f"site_{site.label}", summary, Call(name, kwargs, comments), notes
    )


def storage_access() -> list[Call]:
    """How a site's tasks get their Files (docs/staging.md): `file://` paths of this
    machine copied by rsync over the site's master; http(s), ftp, s3 and gs in the task
    (`pwgen.staging.site_storage_access()`, written out)."""
    return [
        Call("SiteFileStaging"),
        Call("HTTPInTaskStaging"),
        Call("FTPInTaskStaging"),
        Call("CloudStaging"),
    ]


def _walltime(site: Site, partition: Partition, source: str) -> tuple[str, str]:
    """The block walltime and its provenance; clamped to the partition's limit if defaulted."""
    limit = partition.max_time_seconds
    if limit is None or _seconds(site.walltime) <= limit:
        return site.walltime, _from_site(site, "walltime", source)
    if "walltime" in site.model_fields_set:
        raise ConfigError(
            f"site {site.label!r}: walltime {site.walltime} exceeds the {partition.name} "
            f"partition's limit {partition.max_time}"
        )
    hours, rest = divmod(limit, 3600)
    clamped = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return clamped, f"{FACTS}: the default {site.walltime} clamped to the partition limit"


def _seconds(walltime: str) -> int:
    days, _, clock = walltime.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return (int(days) if days else 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def _remote_provider(
    site: Site, provisioned: ProvisionedSite, partition: Partition, source: str
) -> Call:
    facts = provisioned.facts
    if site.executor == "mpi":
        launcher, why = "SimpleLauncher", "MPIExecutor: one worker pool per block"
    elif site.nodes_per_block > 1:
        launcher = "SrunLauncher" if site.scheduler == "slurm" else "MpiExecLauncher"
        why = "a pool on every node of the block"
    else:
        launcher, why = "SingleNodeLauncher", "one node per block"
    walltime, walltime_from = _walltime(site, partition, source)
    worker_init = [f". {shlex.quote(provisioned.activate)}", *site.worker_init]
    init_from = f"{FACTS}: env activation" + (f" + {source}" if site.worker_init else "")
    kwargs: dict[str, Any] = {}
    comments: dict[str, str] = {}
    partition_from = source if site.partition else f"{FACTS}: default partition"
    if site.scheduler == "slurm":
        name = "SSHSlurmProvider"
        kwargs["partition"] = partition.name
        comments["partition"] = partition_from
        for key in ("account", "qos"):
            if getattr(site, key) is not None:
                kwargs[key] = getattr(site, key)
                comments[key] = source
        node_shape(partition, kwargs, comments)
    else:
        if site.qos is not None:
            raise ConfigError(f"site {site.label!r}: qos is a Slurm setting; PBS Pro has none")
        name = "SSHPBSProProvider"
        kwargs["queue"] = partition.name
        comments["queue"] = partition_from
        if site.account is not None:
            kwargs["account"] = site.account
            comments["account"] = source
        if partition.cpus_per_node:
            kwargs["cpus_per_node"] = partition.cpus_per_node
            comments["cpus_per_node"] = f"{FACTS}: queue {partition.name}"
    kwargs.update(
        {
            "nodes_per_block": site.nodes_per_block,
            "init_blocks": site.init_blocks,
            "min_blocks": site.min_blocks,
            "max_blocks": site.max_blocks,
            "walltime": walltime,
            "launcher": Call(launcher),
            "worker_init": "\n".join(worker_init),
            "cmd_timeout": REMOTE_CMD_TIMEOUT,
            "ssh_config": Ref(SSH_CONFIG_NAME),
            "host": site.label,
            "remote_script_dir": f"{facts.workdir.rstrip('/')}/scripts",
        }
    )
    for key in ("nodes_per_block", "init_blocks", "min_blocks", "max_blocks"):
        comments[key] = _from_site(site, key, source)
    comments.update(
        {
            "walltime": walltime_from,
            "launcher": why,
            "worker_init": init_from,
            "cmd_timeout": "seconds per scheduler command over ssh",
            "remote_script_dir": f"{FACTS}: workdir",
        }
    )
    return Call(name, kwargs, comments)


def node_shape(partition: Partition, kwargs: dict[str, Any], comments: dict[str, str]) -> None:
    """A Slurm provider's cores_per_node and mem_per_node (whole GB) from partition facts."""
    if partition.cpus_per_node:
        kwargs["cores_per_node"] = partition.cpus_per_node
        comments["cores_per_node"] = f"{FACTS}: partition {partition.name}"
    if partition.memory_mb_per_node and partition.memory_mb_per_node >= 1024:
        kwargs["mem_per_node"] = math.floor(partition.memory_mb_per_node / 1024)
        comments["mem_per_node"] = (
            f"{FACTS}: {partition.memory_mb_per_node} MB per node in {partition.name}, in GB"
        )
