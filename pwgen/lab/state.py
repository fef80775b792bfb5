"""lab.json: the record of everything a lab created, so `down` removes exactly that.

`up` records a resource *before* creating it; `down` tolerates records of things
that do not exist (an interrupted `up`), so the two always converge.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from pwgen.fileio import atomic_write
from pwgen.lab.errors import LabError
from pwgen.lab.plan import SitePlan

STATE_FILE = "lab.json"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeRecord(_Record):
    name: str
    role: str
    netns: str
    ip: str
    holder_pid: int | None = None  # the process holding the node's mount/UTS namespaces


class SiteRecord(_Record):
    index: int
    label: str
    user: str
    root_if: str
    root_ip: str
    login_ip: str
    private_net: str
    site_dir: str
    nodes: list[NodeRecord]
    # Bind mounts inside every node's own mount namespace (none in the root namespace).
    mounts: list[str]
    scheduler: str = "slurm"  # or "pbspro" (pwgen.lab.pbs)

    @property
    def login(self) -> NodeRecord:
        return self.nodes[0]

    @property
    def computes(self) -> list[NodeRecord]:
        return self.nodes[1:]

    def node(self, name: str) -> NodeRecord:
        return next(node for node in self.nodes if node.name == name)

    def matches(self, plan: SitePlan) -> bool:
        """Same names and addresses as the plan: the site can be kept as it is."""
        return (
            self.label,
            self.user,
            self.root_if,
            self.root_ip,
            self.login_ip,
            self.scheduler,
        ) == (
            plan.label,
            plan.user,
            plan.root_if,
            plan.root_ip,
            plan.login_ip,
            plan.scheduler,
        ) and [(n.name, n.netns, n.ip) for n in self.nodes] == [
            (n.name, n.netns, n.ip) for n in plan.nodes
        ]


class FluxRecord(_Record):
    """The machine's Flux build the lab's last site uses (pwgen.lab.flux)."""

    source: str  # the tarball given to --flux, or "release"
    sha256: str
    prefix: str
    version: str


class PbsRecord(FluxRecord):
    """The machine's OpenPBS build the lab's PBS sites use (pwgen.lab.pbs_build)."""


class LabState(_Record):
    version: int = 1
    prefix: str
    subnet: str
    compute_nodes: int
    state_dir: str
    unreachable_route: str | None = None
    files: list[str] = []
    sites: list[SiteRecord] = []
    flux: FluxRecord | None = None
    pbs: PbsRecord | None = None

    def site(self, label: str) -> SiteRecord | None:
        return next((site for site in self.sites if site.label == label), None)

    @property
    def netns_names(self) -> set[str]:
        return {node.netns for site in self.sites for node in site.nodes}

    @property
    def users(self) -> set[str]:
        return {site.user for site in self.sites}

    @property
    def root_ifs(self) -> set[str]:
        return {site.root_if for site in self.sites}


def record_from_plan(plan: SitePlan, site_dir: Path, mounts: list[str]) -> SiteRecord:
    return SiteRecord(
        index=plan.index,
        label=plan.label,
        user=plan.user,
        root_if=plan.root_if,
        root_ip=plan.root_ip,
        login_ip=plan.login_ip,
        private_net=plan.private_net,
        site_dir=str(site_dir),
        nodes=[NodeRecord(name=n.name, role=n.role, netns=n.netns, ip=n.ip) for n in plan.nodes],
        mounts=mounts,
        scheduler=plan.scheduler,
    )


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def load_state(state_dir: Path) -> LabState | None:
    """The recorded lab, or None when the state dir holds none."""
    path = state_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LabError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return LabState.model_validate_json(text)
    except ValidationError as err:
        raise LabError(f"{path}: not a lab record ({err.error_count()} problems)") from None


def save_state(state: LabState) -> None:
    atomic_write(state_path(Path(state.state_dir)), state.model_dump_json(indent=2) + "\n", 0o600)
