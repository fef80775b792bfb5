"""Stopping a run's processes here, on the controller."""

import contextlib
import os
import signal
from collections.abc import Sequence

from pwgen.poll import poll
from pwgen.status import LocalProcess, pid_alive
from pwgen.teardown.model import Action

#: Seconds a TERMed process has before it is KILLed (here and on the sites).
KILL_AFTER = 3.0


def _same_process(proc: LocalProcess) -> bool:
    """`proc` still runs (not a zombie) and its pid was not reused for another command."""
    if not pid_alive(proc.pid):
        return False
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return False
    return command == proc.command


def _wait_gone(procs: Sequence[LocalProcess], timeout: float) -> None:
    poll(lambda: not any(_same_process(proc) for proc in procs), timeout)


def stop_local(procs: Sequence[LocalProcess], wait: float = KILL_AFTER) -> list[Action]:
    """TERM the processes, KILL those alive after `wait` s; one Action each."""
    alive = [proc for proc in procs if _same_process(proc)]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGTERM)
    _wait_gone(alive, wait)
    hard = [proc for proc in alive if _same_process(proc)]
    for proc in hard:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    _wait_gone(hard, 2)
    actions = []
    for proc in alive:
        survived = _same_process(proc)
        signal_name = "KILL" if proc in hard else "TERM"
        actions.append(
            Action(
                proc.run_id,
                "here",
                f"stopped {proc.kind} pid {proc.pid} ({signal_name})",
                ok=not survived,
                detail=proc.command[:120] if not survived else "still running",
            )
        )
    return actions
