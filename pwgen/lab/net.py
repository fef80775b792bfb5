"""The lab's network: a namespace per node, veth pairs, a bridge per site, routes.

    root ns (controller)          login ns                      compute ns
    <prefix>-<i> root_ip/30 <-veth-> ctl0 login_ip/30
                                  br0 x.x.i.1/24 <-- c<j> <-veth-> eth0 x.x.i.(10+j)/24

The bridge lives inside the login namespace, so the controller has no route to
compute nodes, and compute nodes have no route beyond their own /24.
"""

import contextlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pwgen.lab.errors import LabError
from pwgen.lab.plan import SitePlan
from pwgen.lab.procs import NETNS_DIR
from pwgen.lab.system import run

LOGIN_UPLINK = "ctl0"
BRIDGE = "br0"
COMPUTE_IF = "eth0"


def _ip_batch(commands: list[str], netns: str | None = None) -> None:
    """Run many `ip` commands in one process (stops at the first failure)."""
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(
        argv, input="\n".join(commands) + "\n", capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        where = f" in {netns}" if netns else ""
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise LabError(f"ip -batch failed{where}: {last}")


def existing_netns() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def root_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def netns_links(netns: str) -> set[str]:
    out = run(["ip", "-n", netns, "-j", "link", "show"], check=False)
    try:
        return {link["ifname"] for link in json.loads(out or "[]")}
    except (ValueError, KeyError, TypeError):
        return set()


def build_site(plan: SitePlan) -> None:
    """Create the site's namespaces and links (none of them may exist yet)."""
    login = plan.login.netns
    private = ipaddress.IPv4Network(plan.private_net)
    root = [f"netns add {node.netns}" for node in plan.nodes]
    root += [
        f"link add {plan.root_if} type veth peer name {LOGIN_UPLINK} netns {login}",
        f"addr add {plan.root_ip}/{plan.link_prefixlen} dev {plan.root_if}",
    ]
    _ip_batch(root)
    # The controller end stays IPv4-only: nothing of the lab's leaves the lab's range.
    Path(f"/proc/sys/net/ipv6/conf/{plan.root_if}/disable_ipv6").write_text("1")
    _ip_batch([f"link set {plan.root_if} up"])
    login_cmds = [
        "link set lo up",
        f"addr add {plan.login_ip}/{plan.link_prefixlen} dev {LOGIN_UPLINK}",
        f"link set {LOGIN_UPLINK} up",
        f"link add {BRIDGE} type bridge",
        f"addr add {plan.login.ip}/{private.prefixlen} dev {BRIDGE}",
        f"link set {BRIDGE} up",
    ]
    for j, node in enumerate(plan.computes, start=1):
        login_cmds += [
            f"link add c{j} type veth peer name {COMPUTE_IF} netns {node.netns}",
            f"link set c{j} master {BRIDGE} up",
        ]
    _ip_batch(login_cmds, login)
    for node in plan.computes:
        _ip_batch(
            [
                "link set lo up",
                f"addr add {node.ip}/{private.prefixlen} dev {COMPUTE_IF}",
                f"link set {COMPUTE_IF} up",
            ],
            node.netns,
        )


def site_intact(plan: SitePlan) -> bool:
    """Whether every namespace and link of the site is there (else it is rebuilt)."""
    if not {node.netns for node in plan.nodes} <= existing_netns():
        return False
    if plan.root_if not in root_links():
        return False
    ports = {f"c{j}" for j in range(1, len(plan.computes) + 1)}
    if not {LOGIN_UPLINK, BRIDGE, *ports} <= netns_links(plan.login.netns):
        return False
    return all(COMPUTE_IF in netns_links(node.netns) for node in plan.computes)


def remove_site(root_if: str, netns_names: Iterable[str]) -> None:
    """Delete the site's links and namespaces (their processes must be gone already)."""
    if root_if in root_links():
        # Deleting one end removes the pair now, not when the kernel frees the namespace.
        run(["ip", "link", "del", root_if], check=False)
    present = existing_netns()
    for name in netns_names:
        if name in present:
            run(["ip", "netns", "del", name])


def route_clashes(network: ipaddress.IPv4Network, own: set[str], own_route: bool) -> list[str]:
    """Routes and addresses of this machine inside the lab range that are not this lab's."""
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]")
    clashes = []
    for route in routes:
        dst = route.get("dst", "default")
        if dst == "default" or route.get("dev") in own:
            continue
        try:
            target = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        ours = own_route and target == network and route.get("type") == "unreachable"
        if target.overlaps(network) and not ours:
            kind = route.get("type", "unicast")
            clashes.append(f"{kind} {dst}" + (f" dev {route['dev']}" if "dev" in route else ""))
    return clashes


def add_unreachable(network: str) -> None:
    """Lab traffic to any lab address without a more specific route dies here, on this machine.

    Without it a negative reachability test would leave through the default route.
    """
    run(["ip", "route", "replace", "unreachable", network])


def remove_unreachable(network: str) -> None:
    run(["ip", "route", "del", "unreachable", network], check=False)


def netns_dir_is_mount() -> bool:
    """Whether /run/netns is a mount point (`ip` bind-mounts it onto itself: same device,
    so os.path.ismount can't tell)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return any(line.split()[4] == str(NETNS_DIR) for line in mountinfo)


def release_netns_dir() -> None:
    """Undo what `ip netns add` did to /run/netns (a bind mount onto itself), if it is empty.

    An empty /run/netns serves nobody: `ip` recreates it on its next `netns add`.
    """
    if not NETNS_DIR.is_dir() or any(NETNS_DIR.iterdir()):
        return
    for _ in range(3):  # `ip` may have stacked more than one bind mount
        if not netns_dir_is_mount():
            break
        run(["umount", str(NETNS_DIR)], check=False)
    if netns_dir_is_mount():
        return
    with contextlib.suppress(OSError):
        NETNS_DIR.rmdir()
