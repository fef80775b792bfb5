"""SSH trust, one connection per site, and every ssh command line pwgen runs.

pwgen writes its own OpenSSH client config under `.pwgen/ssh/`:

    config         one `Host <label>` block per site: address, user, key, ProxyJump,
                   pinned known_hosts, ControlMaster/ControlPath/ControlPersist
    known_hosts    the host keys pwgen trusts (0600)

Host keys are pinned: they come from a `known_hosts` file next to the sites file
(the lab writes one), from files the user names, or — only when the user asks
with `--accept-new-host-keys` — from the first contact (`accept-new`: an unknown
key is recorded, a changed key is still refused). Never `StrictHostKeyChecking no`.

Every ssh user (Ansible via `ssh_args = -F config`, the providers, tunnels, staging
and site-side runs) connects as `ssh -F config <label>`, so they share one
ControlMaster; the argvs are built in `command.py` only (a test checks it).

    errors.py    SshError
    trust.py     pinned known_hosts: merged from trusted files, checked per site
    config.py    `.pwgen/ssh/config`: the only writer of ssh config lines
    command.py   SshCommand: every ssh/rsync argv for a (config, Host alias)
    prepare.py   prepare_ssh, SshSetup: a state dir's ssh files
    process.py   run_script: a bounded script on the login node; kill_and_drain
    controldir.py  the masters' socket directory: this user's alone (lstat-checked) or refused
    users.py     which pwgen processes use a master: only the last one stops it
    query.py     what ssh reads from the config for a host (`ssh -G`: the ControlPath)
"""

from pwgen.ssh.command import (
    CONNECT_TIMEOUT,
    KILL_AFTER,
    Master,
    SshCommand,
    ansible_ssh_args,
    bounded_script,
)
from pwgen.ssh.config import CONTROL_PERSIST, quote_path, render_config
from pwgen.ssh.controldir import control_dir, ensure_control_dir
from pwgen.ssh.errors import SshError
from pwgen.ssh.prepare import SshSetup, prepare_ssh
from pwgen.ssh.process import SSH_FAILED, ScriptResult, kill_and_drain, run_script
from pwgen.ssh.trust import adjacent_known_hosts

__all__ = [
    "CONNECT_TIMEOUT",
    "CONTROL_PERSIST",
    "KILL_AFTER",
    "SSH_FAILED",
    "Master",
    "ScriptResult",
    "SshCommand",
    "SshError",
    "SshSetup",
    "adjacent_known_hosts",
    "ansible_ssh_args",
    "bounded_script",
    "control_dir",
    "ensure_control_dir",
    "kill_and_drain",
    "prepare_ssh",
    "quote_path",
    "render_config",
    "run_script",
]
