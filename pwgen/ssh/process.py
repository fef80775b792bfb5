"""Running a bounded script on a site's login node, and stopping an ssh client that
shares a ControlMaster."""

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from pwgen.ssh.command import Master, SshCommand

#: Exit code of `ssh` itself failing (connection, authentication, host key, config),
#: and of a call pwgen had to kill locally because nothing answered.
SSH_FAILED = 255
#: Seconds beyond the remote timeout and ssh's ConnectTimeout before the local backstop.
BACKSTOP_SLACK = 3


@dataclass(frozen=True)
class ScriptResult:
    """What a bounded remote script returned; `killed`: pwgen killed the ssh client."""

    code: int
    stdout: str
    stderr: str
    killed: bool = False


def run_script(
    ssh: SshCommand,
    script: str,
    timeout: float,
    *,
    login: bool = False,
    master: Master = Master.AUTO,
    stdin: bytes | None = None,
) -> ScriptResult:
    """Run a bash script on the login node, bounded on both sides.

    The site stops it after `timeout` s (exit 124, `SshCommand.script`). Killing a local
    ssh client that shares a master neither stops the remote command nor closes its
    pipes, so the local side only kills the client's process group as a backstop (a
    hung master or network), `connect_timeout + BACKSTOP_SLACK` s later: exit 255 with
    a note on stderr.
    """
    seconds = max(1, int(timeout))
    proc = subprocess.Popen(
        ssh.script(script, seconds, login=login, master=master),
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: killed as one
    )
    try:
        out, err = proc.communicate(stdin, timeout=seconds + ssh.connect_timeout + BACKSTOP_SLACK)
    except subprocess.TimeoutExpired:
        out, err = kill_and_drain(proc)
        note = (
            f"pwgen: ssh to {ssh.host} did not answer within {seconds} s "
            "(plus connection time); the ssh process was killed\n"
        )
        err = (err + b"\n" if err.strip() else b"") + note.encode()
        return ScriptResult(SSH_FAILED, _text(out), _text(err), killed=True)
    return ScriptResult(proc.returncode, _text(out), _text(err))


def _text(output: bytes) -> str:
    return output.decode(errors="replace")


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
