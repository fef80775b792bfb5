"""What OpenSSH itself reads from pwgen's config for a host (`ssh -G`)."""

import re
import subprocess

from pwgen.ssh.command import SshCommand

_CONTROL_PATH = re.compile(r"^controlpath (.+)$", re.MULTILINE)


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
