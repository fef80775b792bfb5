"""Sites: the validated description of every cluster a workflow may use.

A site is one Parsl executor on one cluster. Sites come from a `sites.yaml`
written by the user (this module) or from the PW API (`pwgen.sources.pw`); both
produce the same `Site` models, so everything downstream has one input shape.

    sites:
      - label: cluster_a          # executor label: apps use executors=["cluster_a"]
        scheduler: slurm          # slurm | pbspro | local
        host: 10.0.0.5
        user: alice
        partition: compute
"""

import difflib
import ipaddress
import keyword
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pwgen.errors import SitesError
from pwgen.objectstore import STORE_MODELS, ObjectStore
from pwgen.siteflux import FluxSpec
from pwgen.siteoptions import (
    Constraint,
    Gres,
    SchedulerDirective,
    check_directives,
    check_ssh_options,
)
from pwgen.sitevalues import (
    USER,
    check_proxy_jump,
    check_requirement,
    refuse_code,
)
from pwgen.userfiles import MAX_BYTES, read_user_text
from pwgen.validation import first_problem, shown
from pwgen.yamlload import load_yaml

Scheduler = Literal["slurm", "pbspro", "local"]
ExecutorKind = Literal["htex", "mpi", "flux"]
EnvMethod = Literal["conda", "venv", "wheelhouse"]

# Group names the inventory uses; a host with the same name confuses Ansible.
RESERVED_LABELS = frozenset({"all", "ungrouped", "sites"})
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Values that end up in ssh argv or scheduler directives: no spaces, no leading
# dash (an ssh option), no shell metacharacters.
_HOST = re.compile(r"^[A-Za-z0-9_.:\[\]%-]+$")
_SCHEDULER_WORD = re.compile(r"^[A-Za-z0-9_.,:+-]+$")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:[0-5]\d:[0-5]\d$")


def _seconds_to_walltime(value: Any) -> Any:
    """YAML 1.1 reads an unquoted `01:00:00` as the integer 3600: turn it back."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        hours, rest = divmod(value, 3600)
        return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return value


Walltime = Annotated[
    str,
    BeforeValidator(_seconds_to_walltime),
    Field(pattern=_WALLTIME.pattern, description="HH:MM:SS or D-HH:MM:SS"),
]


def _lines(value: Any) -> Any:
    """worker_init may be one multi-line string or a list of lines."""
    if isinstance(value, str):
        return tuple(line for line in value.splitlines() if line.strip())
    return value


class _Model(BaseModel):
    # strict: YAML already yields real ints, bools and strings; "yes" is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*")
    @classmethod
    def _refuse_code(cls, value: Any) -> Any:
        """Every string (and list of strings) of every site model: see pwgen.sitevalues."""
        return refuse_code(value)


class EnvSpec(_Model):
    """How the pinned Parsl environment is built on the site."""

    method: EnvMethod = Field("wheelhouse", description="conda, venv or wheelhouse (offline)")
    prefix: str = Field("~/.pwgen/envs", min_length=1, description="where envs live on the site")
    python: str | None = Field(
        None, min_length=1, description="the site's interpreter (default: pythonX.Y as here)"
    )
    # strict=False only to accept YAML lists as tuples (items stay strict strings).
    extra_packages: tuple[str, ...] = Field(
        (), strict=False, description="PEP 508 requirements installed beside Parsl"
    )

    @field_validator("extra_packages")
    @classmethod
    def _check_extra_packages(cls, packages: tuple[str, ...]) -> tuple[str, ...]:
        for package in packages:
            check_requirement(package)
        return packages


# Settings that only make sense for a remote cluster.
_SLURM_ONLY = ("constraint", "exclusive", "gres")  # qos: refused by configgen
_REMOTE_ONLY = ("host", "user", "identity_file", "proxy_jump", "partition", "account", "qos")


class Site(_Model):
    """One cluster and the executor that runs on it."""

    label: str = Field(description="executor label (apps: executors=[label]); a Python identifier")
    scheduler: Scheduler = Field(description="the cluster's batch system; local: this machine")
    host: str | None = Field(None, description="login node: host name or IP address")
    user: str | None = Field(None, description="ssh user on the login node")
    port: int = Field(22, ge=1, le=65535, description="ssh port")
    identity_file: str | None = Field(None, description="ssh private key on this machine")
    proxy_jump: str | None = Field(None, description="ssh jump host(s): [user@]host[:port],...")
    relay_allow: tuple[str, ...] = Field(
        (), strict=False, description="networks (CIDR) whose hosts may use the worker relay"
    )
    partition: str | None = Field(None, description="Slurm partition / PBS queue (default: facts)")
    account: str | None = Field(None, description="account to charge")
    qos: str | None = Field(None, description="Slurm QOS")
    walltime: Walltime = Field("01:00:00", description="walltime of each block")
    nodes_per_block: int = Field(1, ge=1, description="nodes in each block (batch job)")
    init_blocks: int = Field(1, ge=0, description="blocks requested at the start")
    min_blocks: int = Field(0, ge=0, description="blocks kept when idle")
    max_blocks: int = Field(1, ge=1, description="most blocks at once")
    cores_per_worker: float = Field(1.0, gt=0, description="cores per Parsl worker")
    max_workers_per_node: int | None = Field(None, ge=1, description="cap on workers per node")
    executor: ExecutorKind = Field("htex", description="htex, mpi (MPIExecutor) or flux")
    env: EnvSpec = Field(EnvSpec(), description="how the pinned Parsl env is built on the site")
    flux: FluxSpec | None = Field(None, description="executor flux: where Flux comes from")
    worker_init: Annotated[tuple[str, ...], BeforeValidator(_lines)] = Field(
        (), strict=False, description="shell lines run before the workers start (e.g. module load)"
    )
    workdir: str | None = Field(None, description="run dirs on the site, shared with compute nodes")
    # Batch and ssh options (pwgen.siteoptions): passed through to the provider / ssh.
    scheduler_options: Annotated[tuple[SchedulerDirective, ...], BeforeValidator(_lines)] = Field(
        (), strict=False, description="directive lines (#SBATCH / #PBS) added to each block"
    )
    constraint: Constraint | None = Field(None, description="Slurm --constraint")
    exclusive: bool | None = Field(None, description="Slurm: whole nodes per block")
    gpus_per_node: int | None = Field(None, ge=1, description="GPUs per node of a block")
    gres: Gres | None = Field(None, description="Slurm --gres")
    mem_per_node: int | None = Field(None, ge=1, description="GB per node (default: facts)")
    ssh_options: Annotated[dict[str, str], AfterValidator(check_ssh_options)] = Field(
        default_factory=dict, description="extra OpenSSH options for this host (a safe list)"
    )
    object_store: ObjectStore | None = Field(
        None, description="the S3 API of its s3:// Files (pwgen.objectstore)"
    )

    @field_validator("label")
    @classmethod
    def _check_label(cls, label: str) -> str:
        if not _LABEL.match(label) or keyword.iskeyword(label):
            raise ValueError(
                f"{shown(label)} is not a valid label (a Python identifier: letters, digits, "
                "underscores, not starting with a digit, at most 63 characters)"
            )
        if label in RESERVED_LABELS:
            raise ValueError(f"{shown(label)} is reserved for an inventory group")
        return label

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str | None) -> str | None:
        if host is not None and (not _HOST.match(host) or host.startswith("-")):
            raise ValueError(f"{shown(host)} is not a host name or IP address")
        return host

    @field_validator("user")
    @classmethod
    def _check_user(cls, user: str | None) -> str | None:
        if user is not None and not USER.match(user):
            raise ValueError(f"{shown(user)} is not a user name")
        return user

    @field_validator("proxy_jump")
    @classmethod
    def _check_proxy_jump(cls, jump: str | None) -> str | None:
        return None if jump is None else check_proxy_jump(jump)

    @field_validator("partition", "account", "qos")
    @classmethod
    def _check_scheduler_word(cls, word: str | None) -> str | None:
        if word is not None and not _SCHEDULER_WORD.match(word):
            raise ValueError(f"{shown(word)} has characters a scheduler directive cannot hold")
        return word

    @field_validator("relay_allow")
    @classmethod
    def _check_relay_allow(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"{shown(network)} is not a network (expected CIDR, e.g. 10.1.0.0/16)"
                ) from None
        return networks

    @field_validator("worker_init")
    @classmethod
    def _check_worker_init(cls, lines: tuple[str, ...]) -> tuple[str, ...]:
        for line in lines:
            if "\n" in line:
                raise ValueError("each worker_init entry must be a single line")
        return lines

    @model_validator(mode="after")
    def _check_consistency(self) -> "Site":
        if self.scheduler == "local":
            given = [name for name in _REMOTE_ONLY if getattr(self, name) is not None]
            given += ["relay_allow"] if self.relay_allow else []
            if given:
                raise ValueError(f"{given[0]} is not used by a local site (scheduler: local)")
        elif self.host is None:
            raise ValueError(f"a {self.scheduler} site needs a host")
        if self.min_blocks > self.max_blocks:
            raise ValueError(f"min_blocks ({self.min_blocks}) > max_blocks ({self.max_blocks})")
        if self.init_blocks > self.max_blocks:
            raise ValueError(f"init_blocks ({self.init_blocks}) > max_blocks ({self.max_blocks})")
        check_directives(self.scheduler, self.scheduler_options)
        if self.object_store is not None and self.is_local:
            raise ValueError("object_store is for remote sites")
        if self.flux is not None and self.executor != "flux":
            raise ValueError(f"flux is for executor flux sites, not {self.executor}")
        if self.scheduler != "slurm":
            slurm_only = [name for name in _SLURM_ONLY if getattr(self, name) is not None]
            if slurm_only:
                raise ValueError(
                    f"{slurm_only[0]} is a Slurm option; a {self.scheduler} site has none"
                )
        return self

    @property
    def is_local(self) -> bool:
        return self.scheduler == "local"


class SitesFile(_Model):
    """The top level of a sites.yaml."""

    sites: list[Site] = Field(min_length=1)


# ---------------------------------------------------------------- loading


def load_sites(path: Path) -> list[Site]:
    """Read and validate a sites.yaml; any problem raises one SitesError naming file and line.

    Only a regular file of at most 1 MiB is read (pwgen.userfiles.MAX_BYTES).
    """
    text = read_user_text(path, "sites file", SitesError, MAX_BYTES)
    return parse_sites(text, source=str(path))


def parse_sites(text: str, source: str = "sites.yaml") -> list[Site]:
    """Validate the text of a sites file; `source` names it in error messages."""
    data, root = load_yaml(text, source, SitesError)
    if not isinstance(data, dict):
        raise SitesError(f"{source}: expected a mapping with a 'sites:' list at the top level")
    sites = validate_sites(data, source, root)
    return sites


def validate_sites(data: dict[str, Any], source: str, root: yaml.Node | None = None) -> list[Site]:
    """Validate already-parsed data (from YAML or the PW API) into sites."""
    try:
        sites = SitesFile.model_validate(data).sites
    except ValidationError as err:
        raise SitesError(_describe(err, source, root)) from None
    _refuse_duplicate_labels(sites, source, root)
    return sites


def _refuse_duplicate_labels(sites: Sequence[Site], source: str, root: yaml.Node | None) -> None:
    seen: dict[str, int] = {}
    for index, site in enumerate(sites):
        if site.label in seen:
            where = _where(source, root, ("sites", index, "label"))
            raise SitesError(
                f"{where}: sites[{index}].label: duplicate label {shown(site.label)} "
                f"(also sites[{seen[site.label]}])"
            )
        seen[site.label] = index


def _describe(err: ValidationError, source: str, root: yaml.Node | None) -> str:
    """The first validation error as `file:line: path: message`, plus a count of the rest."""
    problem = first_problem(err)
    message = problem.message
    if err.errors()[0]["type"] == "extra_forbidden":
        message = f"unknown key {problem.loc[-1]!r}{_suggestion(problem.loc)}"
    prefix = f"{problem.path}: " if problem.path else ""
    return f"{_where(source, root, problem.loc)}: {prefix}{message}{problem.more}"


def _suggestion(loc: tuple[Any, ...]) -> str:
    nested: dict[str, type[BaseModel]] = {"env": EnvSpec, "flux": FluxSpec, **STORE_MODELS}
    model: type[BaseModel] = next((nested[k] for k in reversed(loc[:-1]) if k in nested), Site)
    if len(loc) == 1:
        model = SitesFile
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _where(source: str, root: yaml.Node | None, loc: tuple[Any, ...]) -> str:
    line = _line_of(root, loc) if root is not None else None
    return f"{source}:{line}" if line else source


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int | None:
    """Follow a validation path through the YAML node tree to the line it points at."""
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                return line
            key_node, node = match[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
