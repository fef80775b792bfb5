"""Names and addresses of a lab, derived from its options alone (no side effects).

Address plan inside the lab range R (default 10.251.0.0/16):

    R's first /24, cut into /30s   controller <-> login link of site i:
                                   .(4i-3) controller end, .(4i-2) login end
    R's (i+1)-th /24               private network of site i (a bridge in the login
                                   namespace): login .1, compute node j .(10+j)

Names carry the prefix so that two labs (different prefix, range, state dir)
never share a namespace, link or user.
"""

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from pwgen.lab.errors import LabError
from pwgen.layout import StateLayout

DEFAULT_PREFIX = "pwlab"
DEFAULT_SUBNET = "10.251.0.0/16"
DEFAULT_STATE_DIR = StateLayout().lab_dir
LABEL_PREFIX = "lab"
MAX_SITES = 64  # /30 links that fit in one /24
MAX_COMPUTE_NODES = 32
SCHEDULERS = ("slurm", "pbspro")

# Short enough that "<prefix>-<site>" fits a 15-character interface name.
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,9}$")
# Paths the node's own mounts hide (a fresh /run) or that are not real files.
_FORBIDDEN_STATE_ROOTS = (Path("/run"), Path("/proc"), Path("/sys"), Path("/dev"))


@dataclass(frozen=True)
class LabOptions:
    """What the user asked for, validated."""

    prefix: str
    subnet: ipaddress.IPv4Network
    sites: int
    compute_nodes: int
    state_dir: Path
    flux: str | None = None  # a flux-core tarball, or "release" (pwgen.lab.flux)
    schedulers: tuple[str, ...] = ()  # per site (one: every site); none: all Slurm
    pbs: str | None = None  # the OpenPBS tarball PBS sites are built from (pwgen.lab.pbs_build)

    def scheduler_of(self, index: int) -> str:
        if not self.schedulers:
            return "slurm"
        return self.schedulers[0 if len(self.schedulers) == 1 else index - 1]

    @property
    def wants_pbs(self) -> bool:
        return "pbspro" in self.schedulers


@dataclass(frozen=True)
class NodePlan:
    name: str  # hostname and Slurm NodeName
    role: str  # "login" or "compute"
    netns: str
    ip: str  # address on the site's private network


@dataclass(frozen=True)
class SitePlan:
    index: int
    label: str
    user: str
    root_if: str  # controller end of the controller <-> login veth pair
    root_ip: str
    login_ip: str  # login end of that pair: the address the controller uses
    link_prefixlen: int
    private_net: str
    login: NodePlan
    computes: tuple[NodePlan, ...]
    scheduler: str = "slurm"  # or "pbspro" (pwgen.lab.pbs)

    @property
    def nodes(self) -> tuple[NodePlan, ...]:
        return (self.login, *self.computes)

    @property
    def first_job_id(self) -> int:
        # Distinct job id ranges, so a job id alone tells which site it ran on.
        return self.index * 1_000_000


def make_options(
    prefix: str,
    subnet: str,
    sites: int,
    compute_nodes: int,
    state_dir: Path,
    flux: str | None = None,
    schedulers: tuple[str, ...] = (),
    pbs: str | None = None,
) -> LabOptions:
    """Validate raw option values; every problem is one LabError naming the option."""
    if not _PREFIX.match(prefix):
        raise LabError(
            f"--name {prefix!r}: use 1-10 lowercase letters and digits, starting with a letter"
        )
    network = _parse_subnet(subnet)
    max_sites = min(MAX_SITES, 2 ** (24 - network.prefixlen) - 1)
    if not 1 <= sites <= max_sites:
        raise LabError(f"--site-count {sites}: must be between 1 and {max_sites} for {network}")
    if not 1 <= compute_nodes <= MAX_COMPUTE_NODES:
        raise LabError(
            f"--compute-nodes {compute_nodes}: must be between 1 and {MAX_COMPUTE_NODES}"
        )
    state_dir = _check_state_dir(state_dir)
    _check_schedulers(schedulers, sites)
    if "pbspro" in schedulers and not pbs:
        raise LabError(
            "PBS sites need the OpenPBS source: give --pbs-tarball PATH or set $PWGEN_PBS_TARBALL"
        )
    return LabOptions(
        prefix, network, sites, compute_nodes, state_dir, flux or None, schedulers, pbs
    )


def _check_schedulers(schedulers: tuple[str, ...], sites: int) -> None:
    for scheduler in schedulers:
        if scheduler not in SCHEDULERS:
            raise LabError(f"--schedulers {scheduler!r}: use one of {', '.join(SCHEDULERS)}")
    if len(schedulers) > 1 and len(schedulers) != sites:
        raise LabError(
            f"--schedulers {','.join(schedulers)}: names {len(schedulers)} sites, "
            f"but --site-count is {sites}"
        )


def _parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as err:
        raise LabError(f"--subnet {subnet!r}: not an IPv4 network ({err})") from None
    if not network.is_private or network.is_loopback or network.is_link_local:
        raise LabError(f"--subnet {subnet}: use a private range such as {DEFAULT_SUBNET}")
    if not 8 <= network.prefixlen <= 22:
        raise LabError(f"--subnet {subnet}: the prefix length must be between /8 and /22")
    return network


def _check_state_dir(state_dir: Path) -> Path:
    absolute = state_dir.expanduser().absolute()
    for root in _FORBIDDEN_STATE_ROOTS:
        if absolute == root or root in absolute.parents:
            raise LabError(f"--state-dir {state_dir}: must not be under {root}")
    return absolute


def site_plan(options: LabOptions, index: int) -> SitePlan:
    """Names and addresses of site `index` (1-based)."""
    base = options.subnet.network_address
    label = f"{LABEL_PREFIX}{index}"
    netns = f"{options.prefix}-{label}"
    private = base + 256 * index
    login = NodePlan(f"{label}-login", "login", f"{netns}-login", str(private + 1))
    computes = tuple(
        NodePlan(f"{label}-c{j}", "compute", f"{netns}-c{j}", str(private + 10 + j))
        for j in range(1, options.compute_nodes + 1)
    )
    link = base + 4 * (index - 1)
    return SitePlan(
        index=index,
        label=label,
        # "u" can't occur in the index, so two prefixes never produce the same name.
        user=f"{options.prefix}u{index}",
        root_if=f"{options.prefix}-{index}",
        root_ip=str(link + 1),
        login_ip=str(link + 2),
        link_prefixlen=30,
        private_net=f"{private}/24",
        login=login,
        computes=computes,
        scheduler=options.scheduler_of(index),
    )


def site_plans(options: LabOptions) -> list[SitePlan]:
    return [site_plan(options, index) for index in range(1, options.sites + 1)]
