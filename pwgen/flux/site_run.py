"""pwgen's site-side launcher: run a workflow with the Parsl config beside it.

Shipped by `pwgen run` as `pwgen_site_run.py` into a run directory on a site's login
node, next to `parsl_config.py`, `pwgen_script.py` and the workflow, and started from
that directory:

    <env>/bin/python -u pwgen_site_run.py WORKFLOW.py [ARGS...]   run the workflow
    <env>/bin/python pwgen_site_run.py --signal TERM|KILL          signal the run
    <env>/bin/python pwgen_site_run.py --cleanup                   end what is left

Exit codes as `pwgen run` (pwgen_script): the workflow's own, 1 when it raised, 2 when
the config does not load, 130 when interrupted (SIGINT, SIGTERM or SIGHUP). Standard
library, Parsl and pwgen_script only: pwgen itself is not installed on sites.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import traceback
from types import FrameType
from typing import Any

from pwgen_script import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_WORKFLOW_FAILED, run_script

MARKER = "PWGEN_SITE_RUN"
PGID_FILE = "pgid"
CONFIG_FILE = "parsl_config.py"


def say(message: str) -> None:
    print(f"pwgen-site: {message}", file=sys.stderr, flush=True)


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if argv[:1] == ["--signal"] and len(argv) == 2:
        return signal_run(argv[1])
    if argv == ["--cleanup"]:
        return cleanup()
    if not argv or argv[0].startswith("-"):
        say("usage: pwgen_site_run.py WORKFLOW.py [ARGS...] | --signal NAME | --cleanup")
        return EXIT_BAD_INPUT
    return run(argv[0], argv[1:])


def run(workflow: str, args: list[str]) -> int:
    # Every process of the run carries the marker (pwgen sets it with `env` so that it is
    # in this process's own /proc/PID/environ too): --signal and --cleanup find them by it.
    os.environ[MARKER] = run_id()
    with open(PGID_FILE + ".tmp", "w") as handle:
        handle.write(f"{os.getpgrp()}\n")
    os.replace(PGID_FILE + ".tmp", PGID_FILE)
    # Flux's client runs `flux` from PATH: the pinned env's bin/ comes first.
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    dfk = None
    try:
        import parsl

        config = load_config(os.path.join(os.getcwd(), CONFIG_FILE))
        dfk = parsl.load(config)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as err:
        traceback.print_exc()
        say(f"cannot load {CONFIG_FILE}: {type(err).__name__}: {err}")
        code = EXIT_BAD_INPUT
    else:
        code = EXIT_WORKFLOW_FAILED
        try:
            code = run_script(workflow, args, "pwgen-site")
            if code == 0:
                dfk.wait_for_current_tasks()
        except KeyboardInterrupt:
            say("interrupted; cleaning up")
            code = EXIT_INTERRUPTED
            cancel_blocks(dfk)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if dfk is not None:
            dfk.cleanup()
        if "parsl" in sys.modules:
            sys.modules["parsl"].clear()
    return code


def run_id() -> str:
    """The run directory's name: unique per run, the same through any symlinked parent."""
    return os.path.basename(os.getcwd())


def load_config(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("parsl_config", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no Python module at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["parsl_config"] = module
    return module.config


def cancel_blocks(dfk: Any) -> None:
    """Cancel every block first: FluxExecutor's shutdown waits while its block is queued."""
    for executor in list(dfk.executors.values()):
        provider = getattr(executor, "provider", None)
        jobs = list(getattr(provider, "resources", None) or {})
        if provider is None or not jobs:
            continue
        try:
            provider.cancel(jobs)
        except Exception as err:
            say(f"cannot cancel blocks {jobs} of {executor.label}: {err}")


def marked(pid: int | str) -> bool:
    """Does process `pid` belong to the run in this directory?"""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read().split(b"\0")
    except OSError:
        return False
    return f"{MARKER}={run_id()}".encode() in environ


def signal_run(name: str) -> int:
    signum = getattr(signal, f"SIG{name}", None)
    if not isinstance(signum, signal.Signals):
        say(f"no signal {name}")
        return 2
    try:
        with open(PGID_FILE) as handle:
            pgid = int(handle.read())
    except (OSError, ValueError):
        return 1
    if not marked(pgid):
        return 1
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return 1
    return 0


def cleanup() -> int:
    """Cancel the run's Slurm jobs, then kill its leftover processes here."""
    # Jobs first: killing marked processes can end a job's script before squeue lists
    # it, and then it would never be cancelled on sites where its nodes keep running.
    cancel_jobs()
    killed = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and marked(entry):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(entry)
            except OSError:
                pass
    if killed:
        say(f"killed leftover processes {' '.join(killed)}")
    return 0


def cancel_jobs() -> None:
    """scancel this user's jobs whose working directory or script is in the run dir."""
    # The run directory as the kernel (sbatch's WorkDir) and the shell (paths in the
    # config) name it.
    here = {os.getcwd(), os.environ.get("PWD") or os.getcwd()}
    squeue = shutil.which("squeue")
    if squeue is None:
        return
    listing = subprocess.run(
        [squeue, "-h", "-u", str(os.getuid()), "-o", "%i|%Z|%o"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    jobs = []
    for line in listing.stdout.splitlines():
        job, _, rest = line.partition("|")
        workdir, _, command = rest.partition("|")
        for path in (workdir, command):
            if any(path == d or path.startswith(d + "/") for d in here):
                jobs.append(job.strip())
                break
    if jobs:
        subprocess.run(["scancel", *jobs], timeout=60, check=False)
        say(f"cancelled Slurm jobs {' '.join(jobs)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
