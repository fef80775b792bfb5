"""`prepare_ssh`: write a state dir's ssh config and pinned keys; `SshSetup` names them."""

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pwgen.fileio import atomic_write
from pwgen.layout import StateLayout
from pwgen.sites import Site
from pwgen.ssh import users
from pwgen.ssh.command import SshCommand, ansible_ssh_args
from pwgen.ssh.config import render_config
from pwgen.ssh.controldir import ensure_control_dir
from pwgen.ssh.errors import SshError
from pwgen.ssh.query import control_path
from pwgen.ssh.trust import merge_known_hosts, require_pinned_keys


@dataclass(frozen=True)
class SshSetup:
    """The files every ssh call of a pwgen state dir uses."""

    config: Path
    known_hosts: Path

    def command(self, label: str) -> SshCommand:
        """The command lines of site `label` (see `pwgen.ssh.command`)."""
        return SshCommand(str(self.config), label)

    def argv(self, label: str, command: str) -> list[str]:
        """`ssh` argv that runs the shell string `command` on a site through its shared master."""
        return self.command(label).remote(command)

    def ansible_ssh_args(self) -> str:
        """Ansible's `ssh_args`: its own ssh reads this config (pinned keys, the masters)."""
        return ansible_ssh_args(str(self.config))

    def master_running(self, label: str) -> bool:
        check = self.command(label).control("check")
        return subprocess.run(check, capture_output=True, check=False).returncode == 0

    def use_master(self, label: str) -> Path | None:
        """Register this process as a user of the site's master (pwgen.ssh.users)."""
        path, _ = control_path(self.command(label))
        return None if path is None else users.register(path)

    def done_with_master(self, label: str, use: Path | None) -> None:
        """Unregister; stop the master when no pwgen run uses it any more."""
        if use is None or users.release(use):  # no ControlPath to share, or the last user
            self._exit_master(label)

    def stop_master(self, label: str) -> None:
        """`ssh -O exit` on the site's master, unless a live pwgen run still uses it."""
        path, _ = control_path(self.command(label))
        if path is None or not users.in_use(path):
            self._exit_master(label)

    def _exit_master(self, label: str) -> None:
        subprocess.run(self.command(label).control("exit"), capture_output=True, check=False)


def prepare_ssh(
    sites: Sequence[Site],
    state_dir: Path,
    known_hosts_files: Iterable[Path] = (),
    accept_new_host_keys: bool = False,
) -> SshSetup:
    """Write `<state>/ssh/config` and merge pinned host keys into `<state>/ssh/known_hosts`."""
    sockets = ensure_control_dir()  # before anything is written: refused if not private
    layout = StateLayout(state_dir.resolve())
    ssh_dir = layout.ssh_dir
    try:
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise SshError(f"{ssh_dir}: cannot create pwgen's ssh directory: {err.strerror}") from None
    known_hosts = layout.known_hosts
    merge_known_hosts(known_hosts, known_hosts_files)
    remote = [site for site in sites if not site.is_local]
    if not accept_new_host_keys:
        require_pinned_keys(remote, known_hosts)
    config = layout.ssh_config
    text = render_config(remote, known_hosts, accept_new_host_keys, sockets)
    atomic_write(config, text, mode=0o600)
    return SshSetup(config=config, known_hosts=known_hosts)
