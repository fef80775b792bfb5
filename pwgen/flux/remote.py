"""Commands on a site's login node over its shared ssh master, without a pty."""

import subprocess
import sys

from pwgen.ssh import SshSetup

REMOTE_TIMEOUT = 60


def ssh_argv(ssh: SshSetup, label: str, command: str) -> list[str]:
    """`ssh` through the site's shared master, no pty (`-T`): stdout and stderr stay apart."""
    return ["ssh", "-F", str(ssh.config), "-T", label, command]


def remote(ssh: SshSetup, label: str, command: str) -> int:
    """Run a short command on the site; its output is dropped. Returns the exit code."""
    try:
        done = subprocess.run(
            ssh_argv(ssh, label, command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=REMOTE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 255
    if done.stderr:
        sys.stderr.write(done.stderr.decode(errors="replace"))
    return done.returncode
