"""Site facts: what provisioning learned about each remote site, for the config generator.

The `pwgen.hpc.site_facts` Ansible module (the collection's plugins/modules/site_facts.py)
gathers them on the site's login node; `pwgen provision` (or the role itself, given
`site_facts_controller_dir`) keeps one JSON file per site:

    .pwgen/facts/<label>.json      {"version": 1, "scheduler": "slurm",
                                    "partitions": [...], "internal_address": "10.0.0.1", ...}

`SiteFacts` mirrors the module's result (its RETURN documentation is the reference) plus
the bookkeeping `pwgen provision` adds to the same file: `env` (`EnvInfo`, the
`parsl_env_*` facts of the env the runs use) and `gathered_at` (Unix time). Files
the role writes itself (`site_facts_controller_dir`) have neither. Every reader
goes through `read_facts`: nothing else parses these files.

Unknown keys are ignored rather than refused: a newer role may add facts, so an older
pwgen keeps reading what it knows. Incompatible changes bump `version`,
which is checked: a file of another version is an error that says to re-provision.
Known keys are strict (a string where a number belongs is an error, not a coercion):
the module writes real JSON types.
"""

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pwgen.errors import PwgenError
from pwgen.fileio import atomic_write
from pwgen.layout import facts_file_in
from pwgen.sitevalues import refuse_code
from pwgen.userfiles import read_user_text
from pwgen.validation import first_problem

FACTS_VERSION = 1


class FactsError(PwgenError):
    """A site's facts file is missing, not JSON, or not what the facts module writes."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    @field_validator("*")
    @classmethod
    def _refuse_code(cls, value: Any) -> Any:
        """Facts come from the site, which other people administer: held to the same rules
        as site values (no control character, no Ansible template marker)."""
        return refuse_code(value)


Count = Annotated[int, Field(ge=0)]


class Partition(_Model):
    """A Slurm partition or PBS Pro queue.

    `cpus_per_node` and `memory_mb_per_node` are the smallest over the partition's
    nodes (a block sized with them fits on any of them); None when unknown.
    `max_time` is `[D-]HH:MM:SS`, None when unlimited.
    """

    name: str = Field(min_length=1)
    state: str
    nodes: Count | None
    cpus_per_node: Count | None
    memory_mb_per_node: Count | None
    default: bool
    max_time: str | None = None
    max_time_seconds: Count | None = None


class PythonInfo(_Model):
    """The pinned env's interpreter."""

    path: str
    version: str

    @property
    def major_minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


class GatewayPorts(_Model):
    """Whether the site's sshd lets `ssh -R` bind a non-loopback address, and how we know."""

    allowed: bool | Literal["unknown"]
    setting: str | None = None
    method: str | None = None
    source: str | None = None
    reason: str | None = None


class EnvInfo(_Model):
    """The pinned Parsl env, as the pwgen.hpc.parsl_env role published it (`parsl_env_<key>`).

    `path` is empty when a facts-only run (pwgen.hpc.facts) found the env not
    installed yet; `conda` is empty unless the env was built with conda.
    """

    path: str | None = None
    hash: str | None = None
    parsl_version: str | None = None
    python_major_minor: str | None = None
    python_path: str | None = None
    activate: str | None = None
    conda: str | None = None


class FluxInfo(_Model):
    """The Flux the env's Python imports (the pwgen.hpc.flux role put its bindings there).

    A block bootstraps a multi-node instance with `srun <srun_args> flux start`:
    `srun_args` is `["--mpi=pmi2"]` unless Slurm's MpiDefault is pmi2 (None off Slurm).
    """

    version: str | None = None
    prefix: str | None = None
    command: str | None = None
    bindings: str
    mpi_default: str | None = None
    srun_args: list[str] | None = None


#: `mpiexec --version` flavours whose flags are Parsl's PBS Pro MPI prefix
#: (`mpiexec -n N -ppn M -hosts h1,h2`): MPICH's Hydra, Intel MPI, Cray PALS.
MPICH_STYLE = ("mpich", "intel", "cray")


class MpiInfo(_Model):
    """The `mpiexec` first on the PATH the facts module ran with (over ssh, after the site's
    ~/.bashrc) and the MPI it belongs to, from its `--version` (site_facts_mpi)."""

    mpiexec: str
    flavor: Literal["mpich", "intel", "openmpi", "cray", "unknown"]
    version: str | None = None

    @property
    def mpich_style(self) -> bool:
        """Whether it takes Parsl's PBS Pro prefix flags (`-ppn`, `-hosts`)."""
        return self.flavor in MPICH_STYLE


#: The keys `pwgen provision` adds to the module's facts (not in its RETURN documentation).
PROVISION_KEYS = ("env", "gathered_at")


class SiteFacts(_Model):
    """Everything the config generator needs to know about one remote site."""

    version: int = FACTS_VERSION
    scheduler: Literal["slurm", "pbspro"]
    scheduler_version: str | None = None
    scheduler_bin_dir: str | None = None
    partitions: list[Partition]
    internal_address: str | None
    internal_address_method: Literal["subnet", "route", "primary"] | None = None
    internal_interface: str | None = None
    hostname: str
    home: str
    workdir: str
    arch: str
    glibc: str | None
    env_path: str | None = None
    python: PythonInfo | None
    parsl_version: str | None
    worker_pool: str | None
    relay: str | None
    # Where the env's Python imports pwgen_worker from (the pwgen.hpc.relay role installs it);
    # None when it does not, or in facts gathered before the role did.
    worker_helpers: str | None = None
    # The Flux the env imports; None without one, or in facts gathered before this existed.
    flux: FluxInfo | None = None
    # The mpiexec on the site's PATH; None without one. Facts gathered before pwgen looked
    # have no `mpi` key at all (`mpi_probed`).
    mpi: MpiInfo | None = None
    gateway_ports: GatewayPorts
    warnings: list[str] = []
    # Provisioning's bookkeeping (PROVISION_KEYS).
    env: EnvInfo | None = None
    gathered_at: float | None = None

    @field_validator("version")
    @classmethod
    def _check_version(cls, version: int) -> int:
        if version != FACTS_VERSION:
            raise ValueError(
                f"facts version {version}, this pwgen reads version {FACTS_VERSION}: "
                "re-gather them with `pwgen provision`"
            )
        return version

    @field_validator("internal_address")
    @classmethod
    def _check_address(cls, address: str | None) -> str | None:
        if address is not None:
            ipaddress.IPv4Address(address)  # ValueError names the bad value
        return address

    @property
    def mpi_probed(self) -> bool:
        """Whether the facts module looked for `mpiexec` (the key is there, maybe null)."""
        return "mpi" in self.model_fields_set

    @property
    def env_dir(self) -> str | None:
        """The pinned env's directory: provisioning's record, else the module's `env_path`."""
        return (self.env.path if self.env else None) or self.env_path or None

    @property
    def env_activate(self) -> str | None:
        """The env's activation script: the role's `pwgen-activate`, else the env's own."""
        directory = self.env_dir
        if directory is None:
            return None
        return (self.env.activate if self.env else None) or f"{directory}/bin/activate"

    def default_partition(self) -> Partition | None:
        """The partition jobs go to when none is named (the first one if none is marked)."""
        for partition in self.partitions:
            if partition.default:
                return partition
        return self.partitions[0] if self.partitions else None

    def partition(self, name: str | None) -> Partition | None:
        """The partition called `name`, or the default one when `name` is None."""
        if name is None:
            return self.default_partition()
        return next((p for p in self.partitions if p.name == name), None)


# ---------------------------------------------------------------- files


def read_facts(directory: Path, label: str) -> SiteFacts:
    """Load `<directory>/<label>.json`; any problem is one FactsError naming the file."""
    path = facts_file_in(directory, label)
    if not path.exists() and not path.is_symlink():
        raise FactsError(f"{path}: no facts for site {label!r}; run `pwgen provision` first")
    # A regular file of at most 1 MiB: a FIFO or /dev/zero in its place hangs nothing.
    text = read_user_text(path, "facts", FactsError)
    try:
        data = json.loads(text)
    except RecursionError:
        raise FactsError(f"{path}: JSON nested too deeply; re-gather it") from None
    except json.JSONDecodeError as err:
        raise FactsError(
            f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); "
            "re-gather it with `pwgen provision`"
        ) from None
    return validate_facts(data, str(path))


def validate_facts(data: Any, source: str) -> SiteFacts:
    """Validate parsed facts (a file's JSON or a module result); `source` names them."""
    if not isinstance(data, Mapping):
        raise FactsError(f"{source}: expected a JSON object, got {type(data).__name__}")
    try:
        return SiteFacts.model_validate(dict(data))
    except ValidationError as err:
        raise FactsError(_describe(err, source)) from None


def write_facts(directory: Path, label: str, data: Mapping[str, Any] | SiteFacts) -> SiteFacts:
    """Validate and write `<directory>/<label>.json` atomically, mode 0600.

    A mapping is written as given (keys the model does not know, such as facts a newer
    role adds, are kept). Returns the validated facts.
    """
    path = facts_file_in(directory, label)
    if isinstance(data, SiteFacts):
        facts, record = data, data.model_dump(mode="json")
    else:
        facts, record = validate_facts(data, f"facts for site {label!r}"), dict(data)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(path, text, mode=0o600)
    return facts


def _describe(err: ValidationError, source: str) -> str:
    """The first validation error as `source: field: message`, plus a count of the rest."""
    problem = first_problem(err)
    where = f"{source}: {problem.path}" if problem.path else source
    return f"{where}: {problem.message}{problem.more}"
