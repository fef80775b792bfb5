"""pwgen's worker-side helpers: stdlib and Parsl only, imported by Parsl workers on sites.

The pwgen.hpc.relay role installs this file next to Parsl in each site env, and the
controller has the same file as part of pwgen, so a function of this module pickled
by reference on the controller resolves to the same code on a worker.

`run_bash` is Parsl's `remote_side_bash_executor` with one change: the command runs in
its own session, and on walltime the whole process group is killed before AppTimeout
is raised (Parsl raises AppTimeout but leaves the command running).

`run_in_flux` runs a task as a job of the Flux instance the worker pool lives in (a
pwgen Flux site's block): `flux run` with the task's ranks, each rank running Parsl's
own FluxExecutor task runner, and rank 0's result returned.

`python -m pwgen_worker run SCRIPT ARGS...` runs a Python script as `python SCRIPT
ARGS...` would, Parsl's worker pool and interchange lean (`run_script`): the pool's own
import takes 0.12 s on a lab node instead of 0.45 s, and the controller's interchanges
take 16 MB less each (README, "Benchmarks", for the first result).
"""

import contextlib
import importlib
import importlib.util
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Sequence
from typing import Any

__version__ = "3"

#: Seconds between SIGTERM and SIGKILL for a command over its walltime.
KILL_GRACE_SECONDS = 2.0
#: `flux run` options of each FluxExecutor resource key.
FLUX_RUN_OPTIONS = {
    "num_tasks": "--ntasks",
    "num_nodes": "--nodes",
    "cores_per_task": "--cores-per-task",
    "gpus_per_task": "--gpus-per-task",
}
#: The last bytes of `flux run`'s own output quoted when a job fails without a result.
OUTPUT_TAIL = 2000


def run_bash(func: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Build the command line with `func`, run it with bash, kill it on walltime."""
    import parsl.app.errors as pe

    func_name = getattr(func, "__name__", "bash_app")
    command = _command_line(func, func_name, args, kwargs)
    std_out = _open_std_stream("stdout", kwargs)
    std_err = _open_std_stream("stderr", kwargs)
    walltime = kwargs.get("walltime")
    if std_err is not None:
        banner = f"--> executable follows <--\n{command}\n--> end executable <--"
        print(banner, file=std_err, flush=True)
    try:
        proc = subprocess.Popen(
            command,
            stdout=std_out,
            stderr=std_err,
            shell=True,
            executable="/bin/bash",
            close_fds=False,
            start_new_session=True,  # its own process group, so a timeout can kill all of it
        )
    except Exception as err:
        raise pe.AppException(f"App {func_name} caught exception", err) from err
    try:
        returncode = proc.wait(timeout=walltime)
    except subprocess.TimeoutExpired:
        kill_process_group(proc)
        raise pe.AppTimeout(f"App {func_name} exceeded walltime: {walltime} seconds") from None
    if returncode != 0:
        raise pe.BashExitFailure(func_name, returncode)
    missing = [f for f in kwargs.get("outputs", []) if not os.path.exists(f.filepath)]
    if missing:
        raise pe.MissingOutputs(f"Missing outputs from app {func_name}", missing)
    return returncode


def kill_process_group(proc: "subprocess.Popen[bytes]") -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left in it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_GRACE_SECONDS)
        # bash may be gone while children that ignored SIGTERM still hold the group.
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _command_line(
    func: Callable[..., Any], func_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    import parsl.app.errors as pe

    command = None
    try:
        command = func(*args, **kwargs)
        if not isinstance(command, str):
            raise ValueError(f"Expected a str for bash_app commandline, got {type(command)}")
    except AttributeError as err:
        if command is not None:
            raise pe.AppBadFormatting(
                f"App formatting failed for app '{func_name}' with AttributeError: {err}"
            ) from err
        raise pe.BashAppNoReturn(
            f"Bash app '{func_name}' did not return a value, or returned None - "
            f"with this exception: {err}"
        ) from err
    except IndexError as err:
        raise pe.AppBadFormatting(
            f"App formatting failed for app '{func_name}' with IndexError: {err}"
        ) from err
    return command


def _open_std_stream(name: str, kwargs: dict[str, Any]) -> Any:
    import parsl.app.errors as pe
    from parsl.data_provider.files import File
    from parsl.utils import get_std_fname_mode

    spec = kwargs.get(name)
    if spec is None:
        return None
    path: Any
    if isinstance(spec, File):
        path, mode = spec, "w"
    else:
        path, mode = get_std_fname_mode(name, spec)
    try:
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, mode)  # handed to the command
    except Exception as err:
        raise pe.BadStdStreamFile(str(path)) from err


def run_in_flux(job: dict[str, Any], func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`func(*args, **kwargs)` as a Flux job of the enclosing instance ($FLUX_URI).

    `job` holds the task's FluxExecutor keys (num_tasks, num_nodes, cores_per_task,
    gpus_per_task), `flux` (the command) and `jobs_dir` (a directory every node of the
    block sees). The task goes there as Parsl's own package, every rank runs it with
    `parsl.executors.flux.execute_parsl_task`, and rank 0 writes the result (or the
    app's exception), raised or returned here as FluxExecutor does.
    """
    from parsl.app.errors import AppException
    from parsl.serialize import deserialize, pack_apply_message

    if "FLUX_URI" not in os.environ:
        raise AppException("no Flux instance here ($FLUX_URI unset): not a Flux site's block")
    os.makedirs(job["jobs_dir"], mode=0o700, exist_ok=True)
    task_dir = tempfile.mkdtemp(prefix="task-", dir=job["jobs_dir"])
    try:
        task, result, output = (os.path.join(task_dir, n) for n in ("in.pkl", "out.pkl", "out.txt"))
        with open(task, "wb") as handle:
            handle.write(pack_apply_message(func, args, kwargs, buffer_threshold=1 << 20))
        with open(output, "wb") as out:
            code = subprocess.call(_flux_run_command(job, task, result), stdout=out, stderr=out)
        if not os.path.exists(result):
            raise AppException(f"flux run exited {code} without a result: {_tail(output)}")
        with open(result, "rb") as handle:
            outcome = deserialize(handle.read())
    finally:
        shutil.rmtree(task_dir, ignore_errors=True)
    if outcome.exception is not None:
        raise outcome.exception
    return outcome.returnval


def _flux_run_command(job: dict[str, Any], task: str, result: str) -> list[str]:
    options = [f"{option}={job[key]}" for key, option in FLUX_RUN_OPTIONS.items() if key in job]
    runner = [sys.executable, "-m", "parsl.executors.flux.execute_parsl_task"]
    return [job["flux"], "run", *options, "--", *runner, "-i", task, "-o", result]


def _tail(path: str) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - OUTPUT_TAIL))
        text = handle.read().decode(errors="replace").strip()
    return text.replace("\n", " | ") or "(no output)"


# Parsl's package __init__s re-export the DataFlowKernel, every executor and the
# monitoring hub (SQLAlchemy with it), none of which its worker pool and interchange
# use: 0.3 s and 16 MB of imports. These scripts import their own modules without them.
PARSL_PACKAGE_INITS = ("parsl", "parsl.executors", "parsl.monitoring")
POOL_SCRIPT = "process_worker_pool.py"
LEAN_SCRIPTS = {
    POOL_SCRIPT: "parsl.executors.high_throughput.process_worker_pool",
    "interchange.py": "parsl.executors.high_throughput.interchange",
}


def import_lean(module: str) -> bool:
    """Import Parsl's `module` without the imports of Parsl's package __init__s (and
    without SQLAlchemy). False, with nothing of Parsl left imported, when this Parsl's
    module needs them: it is then imported as usual, when the script runs."""
    sys.modules["sqlalchemy"] = None  # type: ignore[assignment]  # refuses its import
    spec = importlib.util.find_spec("parsl")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = next(iter(spec.submodule_search_locations))
    before = set(sys.modules)
    for name in PARSL_PACKAGE_INITS:
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, *name.split(".")[1:])]
        sys.modules[name] = package
    try:
        importlib.import_module(module)
    except Exception:
        for name in set(sys.modules) - before:
            del sys.modules[name]
        return False
    return True


def run_script(command: Sequence[str]) -> None:
    """Run the Python script `command[0]` (found on PATH as a shell finds a command)
    with its arguments in this process, as `python SCRIPT ARGS...` would."""
    script = shutil.which(command[0]) or command[0]
    module = LEAN_SCRIPTS.get(os.path.basename(script))
    if module is not None:
        import_lean(module)
    if os.path.basename(script) == POOL_SCRIPT:  # the one that spawns a manager
        spawn_without_main(MANAGER_PROCESSES)
    sys.argv = [script, *command[1:]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as for `python SCRIPT`
    runpy.run_path(script, run_name="__main__")


#: The worker pool's multiprocessing manager (a server process) is named after its class.
MANAGER_PROCESSES = ("SyncManager-",)


def spawn_without_main(names: Sequence[str]) -> None:
    """Processes spawned under these names do not run the main script again first, as
    multiprocessing's spawn does: the pool's manager serves multiprocessing's own types,
    and the pool script would import all of Parsl again (0.3 s before the pool
    registers). Worker processes (the pool's tasks may need all of Parsl) still do."""
    from multiprocessing import spawn

    prepare = spawn.get_preparation_data

    def preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = prepare(name)
        if name.startswith(tuple(names)):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = preparation_data


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2 or argv[0] != "run":
        print("usage: python -m pwgen_worker run SCRIPT ARGS...", file=sys.stderr)
        return 2
    run_script(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
