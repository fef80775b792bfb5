"""The interchange's guard: the interchange stops when its DataFlowKernel's process dies.

HTEX starts its interchange as a child of the DataFlowKernel's process. A controller
killed with -9 leaves it behind: it keeps dispatching its queue, and the sites' workers
keep computing results nobody will read. pwgen launches the interchange through this
program (a file run by path, standard library only, as Parsl's own launch command is):

    python interchange_guard.py N CLEANUP... LOG -- INTERCHANGE COMMAND...

It starts a new session (out of reach of the terminal's Ctrl-C, see pwgen.executors),
forks a watcher and then *becomes* the interchange (exec: same pid, same stdin, so
HTEX talks to and stops it as if launched directly). The watcher checks twice a second:

- the interchange is gone (the watcher was re-parented): a normal shutdown, it exits;
- the DataFlowKernel's process is gone (its pid no longer runs the process that
  launched us): it TERMs (then KILLs) the interchange, then runs the N words CLEANUP
  (pwgen: the run's teardown, which cancels its blocks and stops its relays) with its
  output in LOG, and exits.

Only the death of the controller's process triggers it: a tunnel being repaired does
not, since the DataFlowKernel's process lives on.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: Seconds between two checks of the DataFlowKernel's process.
CHECK_INTERVAL = 0.5
#: Seconds a TERMed interchange has before it is KILLed.
KILL_AFTER = 2.0


def guard_launch_cmd(interchange: Sequence[str], parsl_run_dir: str | None) -> list[str]:
    """The launch command that runs `interchange` guarded; when orphaned, the teardown of
    the pwgen run whose Parsl run dir (`<run>/runinfo/NNN`) is `parsl_run_dir` follows."""
    from pwgen.layout import RunLayout, StateLayout  # not when run as a program

    cleanup: list[str] = []
    log = os.devnull
    if parsl_run_dir:
        numbered = Path(parsl_run_dir).absolute()
        run = RunLayout(numbered.parent.parent)
        state_dir = run.path.parent.parent
        if StateLayout(state_dir).run(run.run_id).runinfo == numbered.parent and (
            run.manifest.is_file()
        ):
            cleanup = [sys.executable, "-m", "pwgen.teardown", str(state_dir), run.run_id]
            log = str(run.orphan_log)
    return [sys.executable, __file__, str(len(cleanup)), *cleanup, log, "--", *interchange]


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has already died
        return None
    return fields[19]


def _stop(pid: int) -> None:
    """TERM, then KILL after KILL_AFTER seconds: the interchange is gone on return."""
    for sig, wait in ((signal.SIGTERM, KILL_AFTER), (signal.SIGKILL, KILL_AFTER)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _start_time(pid) is None or os.getppid() != pid:
                return
            time.sleep(0.05)


def _watch(dfk_pid: int, dfk_started: str | None, cleanup: Sequence[str], log: str) -> int:
    """The watcher's loop (in the forked child; its parent is the interchange)."""
    interchange = os.getppid()
    while True:
        time.sleep(CHECK_INTERVAL)
        if os.getppid() != interchange:
            return 0  # the interchange ended: the run shut it down
        if dfk_started is not None and _start_time(dfk_pid) == dfk_started:
            continue
        _stop(interchange)
        if not cleanup:
            return 0
        with open(log, "ab") as out:
            out.write(f"controller pid {dfk_pid} gone: interchange stopped\n".encode())
            out.flush()
            return subprocess.call(cleanup, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _detach_stdio() -> None:
    """The watcher holds none of the interchange's pipes (HTEX's stdin, the terminal)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(argv: Sequence[str]) -> int:
    count = int(argv[1])
    cleanup, log = list(argv[2 : 2 + count]), argv[2 + count]
    if argv[3 + count] != "--" or len(argv) <= 4 + count:
        print("interchange_guard: usage: N CLEANUP... LOG -- COMMAND...", file=sys.stderr)
        return 2
    command = list(argv[4 + count :])
    dfk_pid = os.getppid()
    dfk_started = _start_time(dfk_pid)
    os.setsid()
    if os.fork() == 0:
        _detach_stdio()
        os._exit(_watch(dfk_pid, dfk_started, cleanup, log))
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
