"""The lab: real sshd + Slurm + munge sites in network namespaces on this machine.

Tests marked `lab` bring up one lab of 2 sites x 2 compute nodes (module fixture)
with their own prefix, range and state dir, so a user's lab can stay up meanwhile;
they need root and the Debian packages and skip otherwise. The rest are plain
unit tests of the plan and the rendered files.
"""

import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import lab_cli, lab_status, sbatch_and_wait, skip_reason, ssh, tcp_probe
from typer.testing import CliRunner

from pwgen.errors import PwgenError
from pwgen.lab import lifecycle
from pwgen.lab.cli import app
from pwgen.lab.controller import sites_yaml
from pwgen.lab.daemons import SLURMD, pid_of
from pwgen.lab.errors import LabError
from pwgen.lab.plan import make_options, site_plan, site_plans
from pwgen.lab.procs import alive, netns_pids
from pwgen.lab.sitefiles import node_mounts
from pwgen.lab.state import LabState, load_state, record_from_plan
from pwgen.lab.system import Hardware, install_command
from pwgen.lab.templating import render
from pwgen.sites import parse_sites

PREFIX = "pwtest"
SUBNET = "10.252.0.0/16"
# A fixed place, so a run killed half-way is cleaned up by the next one.
STATE_DIR = Path(tempfile.gettempdir()) / "pwgen-test-lab"
UP_ARGS = ["--site-count", "2", "--compute-nodes", "2", "--name", PREFIX, "--subnet", SUBNET]


def _up() -> lifecycle.UpResult:
    options = make_options(PREFIX, SUBNET, 2, 2, STATE_DIR)
    return lifecycle.up(options)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lifecycle.down(STATE_DIR)
    try:
        result = CliRunner().invoke(app, ["up", *UP_ARGS, "--state-dir", str(STATE_DIR)])
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        state = load_state(STATE_DIR)
        assert state is not None
        yield state
    finally:
        lifecycle.down(STATE_DIR)


# ------------------------------------------------------------- the running lab


@pytest.mark.lab
def test_up_writes_usable_controller_files(lab: LabState) -> None:
    sites = parse_sites((STATE_DIR / "sites.yaml").read_text(), "sites.yaml")
    assert [site.label for site in sites] == ["lab1", "lab2"]
    assert {site.host for site in sites} == {site.login_ip for site in lab.sites}
    key = Path(sites[0].identity_file or "")
    assert key.is_absolute() and key.stat().st_mode & 0o777 == 0o600
    config = (STATE_DIR / "ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in config and "StrictHostKeyChecking no" not in config
    assert len((STATE_DIR / "known_hosts").read_text().splitlines()) == 2
    status = lab_status(STATE_DIR)
    assert [site["healthy"] for site in status["sites"]] == [True, True]


@pytest.mark.lab
@pytest.mark.parametrize("partition", ["compute", "debug"])
@pytest.mark.parametrize("site", ["lab1", "lab2"])
def test_sbatch_runs_on_compute_nodes(lab: LabState, site: str, partition: str) -> None:
    record = lab.site(site)
    assert record is not None
    jobs = sbatch_and_wait(STATE_DIR, site, partition, count=4)
    assert {host for _, host in jobs} <= {node.name for node in record.computes}
    # Job ids come from the site's own range.
    assert all(job_id // 1_000_000 == record.index for job_id, _ in jobs)


@pytest.mark.lab
def test_srun_spans_both_compute_nodes(lab: LabState) -> None:
    hosts = ssh(STATE_DIR, "lab1", "srun -N2 hostname").split()
    assert sorted(hosts) == ["lab1-c1", "lab1-c2"]


@pytest.mark.lab
def test_home_is_shared_within_a_site_only(lab: LabState) -> None:
    ssh(STATE_DIR, "lab1", "srun -w lab1-c2 sh -c 'hostname > from-compute'")
    assert ssh(STATE_DIR, "lab1", "cat from-compute").strip() == "lab1-c2"
    assert ssh(STATE_DIR, "lab2", "ls").split() == []


@pytest.mark.lab
def test_lab_ssh_runs_a_command_as_the_site_user(lab: LabState) -> None:
    done = lab_cli("ssh", "--state-dir", str(STATE_DIR), "lab2", "id", "-un", ";", "hostname")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [lab.sites[1].user, "lab2-login"]


@pytest.mark.lab
def test_compute_nodes_reach_their_login_node_only(lab: LabState) -> None:
    one, two = lab.sites
    compute = one.computes[0].netns
    with socket.create_server((one.root_ip, 0)) as listener:  # the controller, on the lab link
        port = listener.getsockname()[1]
        assert tcp_probe(one.login.netns, one.root_ip, port) == "ok"  # the probe works
        assert tcp_probe(compute, one.login.ip, 22) == "ok"
        assert tcp_probe(compute, one.root_ip, port) != "ok"
    assert tcp_probe(compute, two.login_ip, 22) != "ok"
    assert tcp_probe(compute, two.login.ip, 22) != "ok"
    # Nor does the controller reach compute nodes (slurmd listens on 6818 there).
    assert tcp_probe(one.login.netns, one.computes[0].ip, 6818) == "ok"
    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex((one.computes[0].ip, 6818)) != 0


@pytest.mark.lab
def test_up_twice_changes_nothing(lab: LabState) -> None:
    result = _up()
    assert result.actions == []
    assert result.seconds < 5


@pytest.mark.lab
def test_up_restarts_a_dead_slurmd(lab: LabState) -> None:
    node = lab.sites[0].computes[1]
    pid = pid_of(node, SLURMD)
    assert pid is not None
    subprocess.run(["kill", "-9", str(pid)], check=True)
    assert lab_cli("status", "--state-dir", str(STATE_DIR)).returncode == 1
    result = _up()
    assert result.actions == [f"started slurmd on {node.name}"]
    assert ssh(STATE_DIR, "lab1", f"srun -w {node.name} hostname").strip() == node.name
    assert lab_cli("status", "--state-dir", str(STATE_DIR)).returncode == 0


@pytest.mark.lab
def test_up_grows_and_shrinks(lab: LabState) -> None:
    grown = lifecycle.up(make_options(PREFIX, SUBNET, 3, 2, STATE_DIR))
    assert "created site lab3" in grown.actions
    assert ssh(STATE_DIR, "lab3", "hostname").strip() == "lab3-login"
    shrunk = _up()
    assert shrunk.actions == ["removed site lab3"]
    assert f"{PREFIX}-lab3" not in _stdout(["ip", "netns", "list"])
    assert f"{PREFIX}u3" not in Path("/etc/passwd").read_text()
    assert "Host lab3" not in (STATE_DIR / "ssh_config").read_text()


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="runs the CLI as nobody through setpriv")
def test_up_needs_root() -> None:
    code = (
        "import sys\n"
        "from pwgen.errors import PwgenError\n"
        "from pwgen.lab.cli import app\n"
        "try:\n"
        "    app(['up', '--state-dir', sys.argv[1]], standalone_mode=False)\n"
        "except PwgenError as err:\n"
        "    sys.exit(f'error: {err}')\n"
    )
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*nobody, sys.executable, "-c", code, "/nonexistent/lab"],
        capture_output=True,
        text=True,
        check=False,
    )
    if "No module named" in done.stderr or "Permission denied" in done.stderr:
        pytest.skip("nobody cannot run this Python")
    assert done.returncode == 1
    assert done.stderr.startswith("error: pwgen lab needs root") and done.stderr.count("\n") == 1


@pytest.mark.lab
def test_down_leaves_nothing(lab: LabState) -> None:
    pids = [pid for group in netns_pids(lab.netns_names).values() for pid in group]
    assert pids
    result = CliRunner().invoke(app, ["down", "--state-dir", str(STATE_DIR)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert not [pid for pid in pids if alive(pid)]
    assert PREFIX not in _stdout(["ip", "netns", "list"])
    assert PREFIX not in _stdout(["ip", "-br", "link"])
    routes = _stdout(["ip", "-4", "route", "show", "table", "all"])
    assert "10.252." not in routes
    assert f"{PREFIX}u" not in Path("/etc/passwd").read_text()
    assert f"{PREFIX}u" not in Path("/etc/group").read_text()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert PREFIX not in mounts and str(STATE_DIR) not in mounts
    assert not STATE_DIR.exists()
    netns_dir = Path("/run/netns")
    if not (netns_dir.is_dir() and any(netns_dir.iterdir())):  # no other lab is up
        assert " /run/netns " not in mounts
    assert lifecycle.down(STATE_DIR) is None  # and again: nothing to do


def _stdout(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


# ------------------------------------------------------ plan and files (no root)


def test_options_are_validated_with_one_line_errors() -> None:
    state_dir = Path("lab")
    assert issubclass(LabError, PwgenError)
    for prefix, subnet, sites, nodes in [
        ("Bad-Name", SUBNET, 1, 1),
        ("waytoolongprefix", SUBNET, 1, 1),
        ("ok", "8.8.8.0/24", 1, 1),
        ("ok", "10.0.0.0/24", 1, 1),
        ("ok", "10.0.0.1/16", 1, 1),
        ("ok", SUBNET, 0, 1),
        ("ok", SUBNET, 65, 1),
        ("ok", "10.0.0.0/22", 4, 1),
        ("ok", SUBNET, 1, 0),
    ]:
        with pytest.raises(LabError) as err:
            make_options(prefix, subnet, sites, nodes, state_dir)
        assert "\n" not in str(err.value)
    with pytest.raises(LabError, match="/run"):
        make_options("ok", SUBNET, 1, 1, Path("/run/lab"))


def test_plan_addresses_and_names() -> None:
    options = make_options("pwlab", "10.251.0.0/16", 3, 2, Path("lab"))
    two = site_plan(options, 2)
    assert (two.root_ip, two.login_ip, two.login.ip) == ("10.251.0.5", "10.251.0.6", "10.251.2.1")
    assert [node.ip for node in two.computes] == ["10.251.2.11", "10.251.2.12"]
    assert [node.netns for node in two.nodes][:2] == ["pwlab-lab2-login", "pwlab-lab2-c1"]
    assert two.first_job_id == 2_000_000
    network = ipaddress.IPv4Network("10.251.0.0/16")
    for plan in site_plans(make_options("abcdefghij", "10.251.0.0/16", 64, 1, Path("lab"))):
        assert len(plan.root_if) <= 15  # Linux interface names
        assert ipaddress.IPv4Address(plan.login_ip) in network
    names = {plan.user for plan in site_plans(make_options("pw", "10.0.0.0/8", 64, 1, Path("x")))}
    other = {plan.user for plan in site_plans(make_options("pwu1", "10.0.0.0/8", 64, 1, Path("x")))}
    assert not names & other  # two labs never share a user


def test_rendered_configs() -> None:
    plan = site_plan(make_options("pwlab", "10.251.0.0/16", 1, 2, Path("lab")), 1)
    hw = Hardware(2, 1, 1, 2, 1, 1000)
    slurm = render("slurm.conf.j2", site=plan, hw=hw)
    for line in (
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "AccountingStorageType=accounting_storage/none",
        "FirstJobId=1000000",
        "PartitionName=compute Nodes=lab1-c1,lab1-c2 Default=YES",
        "PartitionName=debug Nodes=lab1-c1,lab1-c2",
    ):
        assert line in slurm.splitlines() or line in slurm
    sshd = render("sshd_config.j2", site=plan, listen=[plan.login_ip, plan.login.ip])
    assert "Subsystem sftp internal-sftp" in sshd and "PasswordAuthentication no" in sshd
    listen = [line.split()[1] for line in sshd.splitlines() if line.startswith("ListenAddress")]
    assert listen == ["10.251.0.2", "10.251.1.1"]


def test_sites_yaml_loads_with_pwgen() -> None:
    options = make_options("pwlab", "10.251.0.0/16", 2, 1, Path("/tmp/lab"))
    state = LabState(prefix="pwlab", subnet="10.251.0.0/16", compute_nodes=1, state_dir="/tmp/lab")
    for plan in site_plans(options):
        state.sites.append(record_from_plan(plan, Path("/x"), node_mounts(Path("/x"))))
    sites = parse_sites(sites_yaml(state))
    assert [(s.label, s.host, s.user, s.partition) for s in sites] == [
        ("lab1", "10.251.0.2", "pwlabu1", "compute"),
        ("lab2", "10.251.0.6", "pwlabu2", "compute"),
    ]


def test_install_command_names_every_package() -> None:
    assert install_command(["munge", "slurmd"])[-2:] == ["munge", "slurmd"]
    assert "--no-install-recommends" in install_command(["munge"])
