"""`.pwgen/ssh/config`: the only place pwgen writes ssh config lines.

One `Host <label>` block per site (address, user, key, ProxyJump), then the settings
every connection shares, jump hosts too: pinned known_hosts, batch mode, one
ControlMaster per site.
"""

from collections.abc import Sequence
from pathlib import Path

from pwgen.sites import Site
from pwgen.sitevalues import control_character
from pwgen.ssh.errors import SshError

CONTROL_PERSIST = "10m"


def render_config(
    sites: Sequence[Site], known_hosts: Path, accept_new: bool, control_dir: Path
) -> str:
    """One block per site, then the settings every connection shares (jump hosts too).

    `control_dir` holds the masters' sockets (pwgen.ssh.controldir checked it).
    """
    blocks = ["# Written by pwgen: one Host per site. Rewritten on every provision and run.\n"]
    blocks += ["\n    ".join(_host_lines(site)) + "\n" for site in sites]
    shared = [
        "Host *",
        f"UserKnownHostsFile {quote_path(str(known_hosts))}",
        f"StrictHostKeyChecking {'accept-new' if accept_new else 'yes'}",
        "BatchMode yes",
        "ControlMaster auto",
        f"ControlPath {quote_path(str(control_dir), tokens='/%C')}",
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
        lines += [f"IdentityFile {quote_path(_expand(site.identity_file))}", "IdentitiesOnly yes"]
    if site.proxy_jump:
        lines.append(f"ProxyJump {site.proxy_jump}")
    # One word each, from a list of harmless options (pwgen.siteoptions checked them).
    lines += [f"{name} {value}" for name, value in sorted(site.ssh_options.items())]
    return lines


def _expand(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def quote_path(path: str, tokens: str = "") -> str:
    """A path as one ssh config argument that ssh reads back unchanged.

    Double-quoted (spaces), backslash and quote escaped (ssh's own argument splitting),
    `%` doubled (ssh expands %-tokens in these paths); `tokens` is appended as is
    (`/%C`). A control character cannot be quoted: a newline would end the line and
    start another directive.
    """
    if control_character(path, tab=True) is not None:
        raise SshError(f"{path!r}: a path in pwgen's ssh config cannot hold a control character")
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}{tokens}"'
