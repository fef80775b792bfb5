"""`pwgen ssh open SITE` / `pwgen ssh close SITE`: a master the user holds open.

pwgen's own ssh never prompts (BatchMode): a site that asks for an MFA code or a
password at each login needs a master the user opened once at the terminal. `open`
starts one with pwgen's ssh config (so every pwgen command joins it) and lets ssh ask
whatever it asks; then it registers the master's own process as a user of it
(pwgen.ssh.users), so no pwgen run stops it when it ends: it lives until `close` (or
until it dies). `close` drops that registration and stops the master unless a live
pwgen run still uses it.
"""

import subprocess
import tempfile

from pwgen.errors import PwgenError
from pwgen.ssh import users
from pwgen.ssh.command import SshCommand
from pwgen.ssh.query import control_path, master_pid

#: Seconds the user has to answer the prompts.
OPEN_TIMEOUT = 300


class HoldError(PwgenError):
    """The held master could not be opened or closed."""


def open_master(ssh: SshCommand) -> int:
    """Open (or adopt) the site's master, interactively; returns its pid."""
    pid = master_pid(ssh)
    if pid is None:
        # Prompts go to the terminal (/dev/tty); the master that ssh forks keeps its
        # stdout and stderr, so they are not pipes anyone waits on.
        with tempfile.TemporaryFile() as errors:
            done = subprocess.run(
                ssh.held_master(),
                stdout=subprocess.DEVNULL,
                stderr=errors,
                timeout=OPEN_TIMEOUT,
                check=False,
            )
            errors.seek(0)
            said = " ".join(errors.read().decode(errors="replace").split())
        pid = master_pid(ssh)
        if done.returncode != 0 or pid is None:
            raise HoldError(
                f"site {ssh.host!r}: ssh could not log in (exit {done.returncode}): "
                f"{said or 'no message'}"
            )
    path = _control_path(ssh)
    users.register_process(path, pid)
    return pid


def close_master(ssh: SshCommand) -> bool:
    """Let the site's master go; True when it was stopped (no pwgen run uses it)."""
    pid = master_pid(ssh)
    if pid is None:
        return False
    path = _control_path(ssh)
    users.release_process(path, pid)
    if users.in_use(path):
        return False
    subprocess.run(ssh.control("exit"), capture_output=True, check=False)
    return True


def _control_path(ssh: SshCommand) -> str:
    path, why = control_path(ssh)
    if path is None:
        raise HoldError(f"site {ssh.host!r}: no ControlPath for it ({why or 'ssh -G'})")
    return path
