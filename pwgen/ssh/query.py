"""What OpenSSH itself says about a host of pwgen's config: its settings (`ssh -G`) and
its running master (`ssh -O check`)."""

import re
import subprocess

from pwgen.ssh.command import SshCommand

_CONTROL_PATH = re.compile(r"^controlpath (.+)$", re.MULTILINE)
_MASTER_PID = re.compile(r"Master running \(pid=(\d+)\)")


def control_path(command: SshCommand, timeout: float = 30) -> tuple[str | None, str]:
    """(the master's socket path as ssh computes it, None when there is none; ssh's stderr)."""
    try:
        done = subprocess.run(
            command.query(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return None, "ssh -G did not answer"
    found = _CONTROL_PATH.search(done.stdout)
    if done.returncode != 0 or found is None or found.group(1) == "none":
        return None, done.stderr.strip()
    return found.group(1), ""


def master_pid(command: SshCommand, timeout: float = 30) -> int | None:
    """The pid of the site's running master (`ssh -O check`); None if there is none or it
    does not answer (a hung master counts as dead)."""
    try:
        done = subprocess.run(
            command.control("check"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    found = _MASTER_PID.search(done.stderr)
    return int(found.group(1)) if done.returncode == 0 and found else None
