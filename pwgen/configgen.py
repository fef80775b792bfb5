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
"""

import importlib.util
import json
import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from pwgen import __version__
from pwgen.errors import ConfigError
from pwgen.facts import FactsError, Partition, SiteFacts, facts_path, read_facts
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
    "SrunLauncher": "parsl.launchers",
    "MpiExecLauncher": "parsl.launchers",
    "SiteHighThroughputExecutor": "pwgen.executors",
    "SiteMPIExecutor": "pwgen.executors",
    "SSHSlurmProvider": "pwgen.providers",
    "SSHPBSProProvider": "pwgen.providers",
}

# Short enough that the first result does not wait 5 s for the first block
# (measured: 3.5 s to first result with 1 s, 7.8 s with Parsl's default 5 s).
STRATEGY_PERIOD = 1
DEFAULT_RUN_DIR = ".pwgen/runinfo"
#: pwgen's state directory (see pwgen.run.STATE_DIR): facts and ssh config live there.
STATE_DIR = Path(".pwgen")
#: The module-level name of the ssh config path in a generated config.
SSH_CONFIG_NAME = "SSH_CONFIG"
#: Seconds a scheduler command may take on a site (Parsl's 10 s is too short over ssh).
REMOTE_CMD_TIMEOUT = 30
_INDENT = "    "


@dataclass(frozen=True)
class Ref:
    """A bare name in the generated source (a module-level constant)."""

    name: str


@dataclass(frozen=True)
class Call:
    """A constructor call in the generated source: `name(**kwargs)`.

    `comments` maps a keyword to a comment rendered after it (where the value came from).
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    comments: Mapping[str, str] = field(default_factory=dict)

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
    notes: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        return pyrepr(self.call)


def pyrepr(value: Any, depth: int = 0) -> str:
    """Python source for a literal, a `Ref` or a `Call`, one keyword argument per line."""
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, Call):
        if not value.kwargs:
            return f"{value.name}()"
        inner = _INDENT * (depth + 1)
        lines = []
        for key, item in value.kwargs.items():
            comment = value.comments.get(key)
            lines.append(
                f"{inner}{key}={pyrepr(item, depth + 1)},{f'  # {comment}' if comment else ''}\n"
            )
        return f"{value.name}(\n{''.join(lines)}{_INDENT * depth})"
    return repr(value)


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
    state = state_dir.resolve()
    directory = state / "facts"
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
    ssh_config = state / "ssh" / "config"
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


# ---------------------------------------------------------------- executors


def executor_for(
    site: Site, provisioned: ProvisionedSite | None = None, *, origin: str = "sites.yaml"
) -> ExecutorSource:
    """The executor (and provider) a site gets; remote sites need what provisioning wrote.

    `origin` names the sites source in the provenance comments.
    """
    if not site.is_local:
        return _remote_executor(site, provisioned, origin)
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


# ---------------------------------------------------------------- remote sites

FACTS = "facts"


def _from_site(site: Site, name: str, label: str) -> str:
    """Provenance of a site setting: given in the sites source, or its default."""
    return label if name in site.model_fields_set else "default"


def _remote_executor(
    site: Site, provisioned: ProvisionedSite | None, source: str
) -> ExecutorSource:
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
        kwargs["max_workers_per_block"] = site.max_workers_per_node or 1
        comments["max_workers_per_block"] = f"{_from_site(site, 'max_workers_per_node', source)}"
        kwargs["mpi_launcher"] = "srun" if site.scheduler == "slurm" else "mpiexec"
        comments["mpi_launcher"] = f"{site.scheduler}"
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
        if partition.cpus_per_node:
            kwargs["cores_per_node"] = partition.cpus_per_node
            comments["cores_per_node"] = f"{FACTS}: partition {partition.name}"
        if partition.memory_mb_per_node and partition.memory_mb_per_node >= 1024:
            kwargs["mem_per_node"] = math.floor(partition.memory_mb_per_node / 1024)
            comments["mem_per_node"] = (
                f"{FACTS}: {partition.memory_mb_per_node} MB per node in {partition.name}, in GB"
            )
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


# ---------------------------------------------------------------- module


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
        if site.is_local or site.executor == "flux":
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
