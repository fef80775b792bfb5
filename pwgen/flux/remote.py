"""Short commands on a site's login node over its shared ssh master (`SshSetup.argv`)."""

import subprocess
import sys

from pwgen.ssh import SshSetup

REMOTE_TIMEOUT = 60


def remote(ssh: SshSetup, label: str, command: str) -> int:
    """Run a short command on the site; its output is dropped. Returns the exit code."""
    try:
        done = subprocess.run(
            ssh.argv(label, command),
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
