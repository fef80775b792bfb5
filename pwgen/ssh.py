"""SSH trust and one connection per site, shared by Ansible and by runs.

pwgen writes its own OpenSSH client config under `.pwgen/ssh/`:

    config         one `Host <label>` block per site: address, user, key, ProxyJump,
                   pinned known_hosts, ControlMaster/ControlPath/ControlPersist
    known_hosts    the host keys pwgen trusts (0600)

Host keys are pinned: they come from a `known_hosts` file next to the sites file
(the lab writes one), from files the user names, or — only when the user asks
with `--accept-new-host-keys` — from the first contact (`accept-new`: an unknown
key is recorded, a changed key is still refused). Never `StrictHostKeyChecking no`.

Every ssh user (Ansible via `ssh_args = -F config`, the providers and tunnels of
a run) connects as `ssh -F config <label>`, so they share one ControlMaster.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pwgen.errors import PwgenError
from pwgen.fileio import atomic_write
from pwgen.layout import StateLayout
from pwgen.sites import Site

SSH_DIR = "ssh"
# Sockets live in a short per-user directory: a unix socket path must stay under ~104 bytes.
CONTROL_DIR = Path(f"/tmp/pwgen-cm-{os.getuid()}")
CONTROL_PERSIST = "10m"


class SshError(PwgenError):
    """Host keys or ssh settings are missing or wrong."""


@dataclass(frozen=True)
class SshSetup:
    """The files every ssh call of a pwgen state dir uses."""

    config: Path
    known_hosts: Path

    def argv(self, label: str, *command: str) -> list[str]:
        """`ssh` argv that runs `command` on a site through its shared master."""
        return ["ssh", "-F", str(self.config), label, *command]

    def master_running(self, label: str) -> bool:
        check = ["ssh", "-F", str(self.config), "-O", "check", label]
        return subprocess.run(check, capture_output=True, check=False).returncode == 0

    def stop_master(self, label: str) -> None:
        stop = ["ssh", "-F", str(self.config), "-O", "exit", label]
        subprocess.run(stop, capture_output=True, check=False)


def prepare_ssh(
    sites: Sequence[Site],
    state_dir: Path,
    known_hosts_files: Iterable[Path] = (),
    accept_new_host_keys: bool = False,
) -> SshSetup:
    """Write `<state>/ssh/config` and merge pinned host keys into `<state>/ssh/known_hosts`."""
    ssh_dir = StateLayout(state_dir).ssh_dir.resolve()
    try:
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise SshError(f"{ssh_dir}: cannot create pwgen's ssh directory: {err.strerror}") from None
    CONTROL_DIR.mkdir(exist_ok=True, mode=0o700)
    known_hosts = ssh_dir / "known_hosts"
    _merge_known_hosts(known_hosts, known_hosts_files)
    remote = [site for site in sites if not site.is_local]
    if not accept_new_host_keys:
        _require_pinned_keys(remote, known_hosts)
    config = ssh_dir / "config"
    atomic_write(config, render_config(remote, known_hosts, accept_new_host_keys), mode=0o600)
    return SshSetup(config=config, known_hosts=known_hosts)


def render_config(sites: Sequence[Site], known_hosts: Path, accept_new: bool) -> str:
    """One block per site, then the settings every connection shares (jump hosts too)."""
    blocks = ["# Written by pwgen: one Host per site. Rewritten on every provision and run.\n"]
    for site in sites:
        lines = [f"Host {site.label}", f"HostName {site.host}", f"Port {site.port}"]
        if site.user:
            lines.append(f"User {site.user}")
        if site.identity_file:
            lines += [f"IdentityFile {_expand(site.identity_file)}", "IdentitiesOnly yes"]
        if site.proxy_jump:
            lines.append(f"ProxyJump {site.proxy_jump}")
        blocks.append("\n    ".join(lines) + "\n")
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


def _expand(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _merge_known_hosts(target: Path, sources: Iterable[Path]) -> None:
    lines = _read_lines(target) if target.exists() else []
    for source in sources:
        if not source.is_file():
            raise SshError(f"{source}: known_hosts file not found")
        lines += [line for line in _read_lines(source) if line not in lines]
    atomic_write(target, "".join(f"{line}\n" for line in lines), mode=0o600)


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _require_pinned_keys(sites: Sequence[Site], known_hosts: Path) -> None:
    """Refuse to contact a site whose host key pwgen does not know yet."""
    for site in sites:
        host = site.host if site.port == 22 else f"[{site.host}]:{site.port}"
        found = subprocess.run(
            ["ssh-keygen", "-F", str(host), "-f", str(known_hosts)],
            capture_output=True,
            check=False,
        )
        if found.returncode != 0:
            raise SshError(
                f"site {site.label!r}: no pinned host key for {host}; add it with "
                "--known-hosts FILE, or trust the first contact with --accept-new-host-keys"
            )


def known_hosts_near(sites_file: Path) -> list[Path]:
    """A `known_hosts` next to the sites file (as the lab writes it) is trusted."""
    candidate = sites_file.parent / "known_hosts"
    return [candidate] if candidate.is_file() else []


def kill_and_drain(proc: "subprocess.Popen[bytes]") -> tuple[bytes, bytes]:
    """Kill an ssh client's process group; return what it wrote.

    A client that shares a ControlMaster may never close its pipes (the master holds
    the write ends), so reading stops after a second instead of waiting for EOF.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        return proc.communicate(timeout=1)
    except subprocess.TimeoutExpired as partial:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        return partial.output or b"", partial.stderr or b""
