"""Stopping a local ssh client that shares a ControlMaster."""

import contextlib
import os
import signal
import subprocess


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
