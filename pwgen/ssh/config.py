"""`.pwgen/ssh/config`: the only place pwgen writes ssh config lines.

One `Host <label>` block per site (address, user, key, ProxyJump), then the settings
every connection shares, jump hosts too: pinned known_hosts, batch mode, one
ControlMaster per site.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from pwgen.sites import Site

# Sockets live in a short per-user directory: a unix socket path must stay under ~104 bytes.
CONTROL_DIR = Path(f"/tmp/pwgen-cm-{os.getuid()}")
CONTROL_PERSIST = "10m"


def render_config(sites: Sequence[Site], known_hosts: Path, accept_new: bool) -> str:
    """One block per site, then the settings every connection shares (jump hosts too)."""
    blocks = ["# Written by pwgen: one Host per site. Rewritten on every provision and run.\n"]
    blocks += ["\n    ".join(_host_lines(site)) + "\n" for site in sites]
    shared = [
        "Host *",
        f"UserKnownHostsFile {known_hosts}",
        f"StrictHostKeyChecking {'accept-new' if accept_new else 'yes'}",
        "BatchMode yes",
        "ControlMaster auto",
        f"ControlPath {CONTROL_DIR}/%C",
        f"ControlPersist {CONTROL_PERSIST}",
        # A forward that cannot be set up fails the connection instead of half-working.
        "ExitOnForwardFailure yes",
        "ServerAliveInterval 15",
        "ServerAliveCountMax 3",
    ]
    blocks.append("\n    ".join(shared) + "\n")
    return "\n".join(blocks)


def _host_lines(site: Site) -> list[str]:
    lines = [f"Host {site.label}", f"HostName {site.host}", f"Port {site.port}"]
    if site.user:
        lines.append(f"User {site.user}")
    if site.identity_file:
        lines += [f"IdentityFile {_expand(site.identity_file)}", "IdentitiesOnly yes"]
    if site.proxy_jump:
        lines.append(f"ProxyJump {site.proxy_jump}")
    return lines


def _expand(path: str) -> str:
    return str(Path(path).expanduser().resolve())
