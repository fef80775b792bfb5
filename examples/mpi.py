"""MPI apps side by side in one block: `pwgen run examples/mpi.py --sites S [-- SITE [SECONDS]]`.

On SITE, or on every `executor: mpi` site of the config, whose blocks must have at
least two nodes (`nodes_per_block: 2`), the workflow

1. builds `mpi_hello.c` (next to this file) with `mpicc` on the site: the source
   travels as an argument, the binary lands in the site user's home, which the
   compute nodes share;
2. runs two MPI apps of 2 ranks each (`num_nodes: 1`, `ranks_per_node: 2`) at the same
   time: Parsl's MPIExecutor gives each its own node of the site's one block and
   launches the ranks with `$PARSL_MPI_PREFIX` (`srun ... --mpi=pmix` on Slurm);
3. prints, for each app, its batch job, ranks, hosts and start/end times (one JSON
   line each, `mpi app SITE/NAME: {...}`), and whether the two ran at once.

Each rank holds for SECONDS (default 5) between two barriers, so that the overlap shows.
"""

import json
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import parsl
from parsl import python_app
from parsl.executors import MPIExecutor

SOURCE = Path(__file__).with_name("mpi_hello.c")
# What the MPI launcher needs besides the ranks: Slurm starts OpenMPI ranks through PMIx.
LAUNCHER_OPTIONS = {"srun": "--mpi=pmix", "mpiexec": "", "aprun": ""}
APPS = ("a", "b")


def build(source: str, name: str, parsl_resource_specification: dict[str, Any]) -> str:
    """Compile an MPI program with mpicc on the site; return the binary's path there."""
    import hashlib
    import os
    import subprocess

    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    directory = os.path.expanduser("~/.cache/pwgen-examples")
    os.makedirs(directory, exist_ok=True)
    binary = os.path.join(directory, f"{name}-{digest}")
    if not os.path.exists(binary):
        c_file = f"{binary}.{os.getpid()}.c"
        with open(c_file, "w", encoding="utf-8") as out:
            out.write(source)
        try:
            done = subprocess.run(
                ["mpicc", "-O2", "-o", f"{binary}.{os.getpid()}", c_file],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"mpicc failed: {done.stderr.strip()}")
            os.replace(f"{binary}.{os.getpid()}", binary)
        finally:
            os.unlink(c_file)
    return binary


def hello(binary: str, seconds: float, parsl_resource_specification: dict[str, Any]) -> Any:
    """Run the MPI program with the launcher prefix Parsl composed for this task."""
    import json
    import os
    import shlex
    import subprocess

    command = f"{os.environ['PARSL_MPI_PREFIX']} {shlex.quote(binary)} {seconds}"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["command"] = command
    report["job_id"] = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")
    return report


def mpi_sites(requested: str | None) -> dict[str, MPIExecutor]:
    """The MPI executors to use: the one asked for, or every one of the config."""
    executors = parsl.dfk().executors
    mpi = {label: ex for label, ex in executors.items() if isinstance(ex, MPIExecutor)}
    if requested is not None and requested not in mpi:
        raise SystemExit(f"mpi.py: {requested!r} is not an MPI site (MPI sites: {sorted(mpi)})")
    if not mpi:
        raise SystemExit("mpi.py: no site with `executor: mpi` in the config")
    return {requested: mpi[requested]} if requested else dict(sorted(mpi.items()))


def submit(label: str, executor: MPIExecutor, seconds: float) -> dict[str, Future[Any]]:
    """Build the program on the site, then start both apps there."""
    options = LAUNCHER_OPTIONS.get(executor.mpi_launcher, "")
    one_node = {"num_nodes": 1, "ranks_per_node": 2, "launcher_options": options}
    binary = python_app(build, executors=[label])(
        SOURCE.read_text(encoding="utf-8"),
        "mpi_hello",
        parsl_resource_specification={"num_nodes": 1, "ranks_per_node": 1},
    )
    run = python_app(hello, executors=[label])
    return {name: run(binary, seconds, parsl_resource_specification=one_node) for name in APPS}


def main(requested: str | None, seconds: float) -> None:
    futures = {label: submit(label, ex, seconds) for label, ex in mpi_sites(requested).items()}
    for label, apps in futures.items():
        reports = {name: future.result() for name, future in apps.items()}
        for name, report in reports.items():
            print(f"mpi app {label}/{name}: {json.dumps(report, sort_keys=True)}")
            ranks = ", ".join(f"{r['rank']}@{r['host']}" for r in report["ranks"])
            took = report["end"] - report["start"]
            job = report["job_id"]
            print(f"  {label} job {job}: size {report['size']}, ranks {ranks}, {took:.1f} s")
        first, second = (reports[name] for name in APPS)
        overlap = min(first["end"], second["end"]) - max(first["start"], second["start"])
        verdict = "yes" if overlap > 0 else "no"
        print(f"{label}: concurrent {verdict} (overlap {max(overlap, 0):.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None, float(sys.argv[2]) if len(sys.argv) > 2 else 5)
