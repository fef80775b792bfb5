"""One workflow, two kinds of site: Python apps here, MPI apps packed by Flux there.

    pwgen run examples/flux_multisite.py --sites S -- HTEX FLUX [APPS [SECONDS [MPI...]]]

Python apps run on the HTEX site HTEX; MPI apps run on the Flux site FLUX, whose block
is one Flux instance over its nodes. Each MPI app asks for its ranks with
FluxExecutor's own keys, and Flux packs the apps into the block:

    @bash_app(executors=[FLUX])
    def hello(binary, seconds, stdout=None, parsl_resource_specification=None):
        return f"{binary} {seconds}"

    hello(binary, 2, parsl_resource_specification={"num_tasks": 2, "num_nodes": 2})

The command runs as those 2 ranks (Flux's PMI wires them into one MPI job). The
workflow:

1. squares 20 numbers on HTEX (python apps);
2. builds `mpi_hello.c` (next to this file) on FLUX with each MPI flavour asked for
   (`openmpi`, `mpich`: default both that the site has), a python app;
3. runs APPS (default 4) MPI apps of 2 ranks per flavour, SECONDS (default 2) each,
   as bash apps whose stdout comes back here; prints one JSON line per app
   (`flux app NAME: {...}`: size, ranks and their hosts, start and end);
4. prints how long the MPI apps took together against one after another.
"""

import json
import sys
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from parsl import bash_app, python_app

SOURCE = Path(__file__).with_name("mpi_hello.c")
#: Each flavour's compiler wrapper (Debian's names; `mpicc` is the default one).
COMPILERS = {"openmpi": "mpicc.openmpi", "mpich": "mpicc.mpich"}


def square(x: int) -> tuple[int, str]:
    import socket

    return x * x, socket.gethostname()


def build(source: str, compiler: str) -> str | None:
    """Compile the MPI program with `compiler` on the site (None: the site lacks it)."""
    import hashlib
    import os
    import shutil
    import subprocess

    if shutil.which(compiler) is None:
        return None
    digest = hashlib.sha256(f"{compiler}\0{source}".encode()).hexdigest()[:12]
    directory = os.path.expanduser("~/.cache/pwgen-examples")
    os.makedirs(directory, exist_ok=True)
    binary = os.path.join(directory, f"mpi_hello-{compiler}-{digest}")
    if not os.path.exists(binary):
        c_file = f"{binary}.{os.getpid()}.c"
        with open(c_file, "w", encoding="utf-8") as out:
            out.write(source)
        try:
            done = subprocess.run(
                [compiler, "-O2", "-o", f"{binary}.{os.getpid()}", c_file],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{compiler} failed: {done.stderr.strip()}")
            os.replace(f"{binary}.{os.getpid()}", binary)
        finally:
            os.unlink(c_file)
    return binary


def hello(
    binary: str,
    seconds: float,
    stdout: Any = None,
    parsl_resource_specification: dict[str, Any] | None = None,
) -> str:
    """The MPI program itself: this command runs as the ranks the spec asks for."""
    import shlex

    return f"{shlex.quote(binary)} {seconds}"


def main(htex: str, flux: str, apps: int, seconds: float, flavours: list[str]) -> None:
    squares = [python_app(square, executors=[htex])(x) for x in range(20)]
    builder = python_app(build, executors=[flux])
    binaries = {name: builder(SOURCE.read_text(), COMPILERS[name]) for name in flavours}
    ranks = {"num_tasks": 2, "num_nodes": 2}
    run = bash_app(hello, executors=[flux])
    out = Path(tempfile.mkdtemp(prefix="flux-multisite-"))
    started: dict[str, Future[Any]] = {}
    for name, binary in binaries.items():
        if binary.result() is None:
            print(f"{flux}: no {COMPILERS[name]}: {name} skipped")
            continue
        for i in range(apps):
            stdout = str(out / f"{name}-{i}.out")
            started[f"{name}-{i}"] = run(
                binary.result(), seconds, stdout=stdout, parsl_resource_specification=ranks
            )
    hosts = {host for _, host in (f.result() for f in squares)}
    print(
        f"squares on {htex}: {sum(v for v, _ in (f.result() for f in squares))} ({sorted(hosts)})"
    )
    reports = {}
    for name, future in started.items():
        future.result()
        report = json.loads((out / f"{name}.out").read_text().strip().splitlines()[-1])
        reports[name] = report
        print(f"flux app {name}: {json.dumps(report, sort_keys=True)}")
    if reports:
        span = max(r["end"] for r in reports.values()) - min(r["start"] for r in reports.values())
        serial = sum(r["end"] - r["start"] for r in reports.values())
        together = f"{len(reports)} MPI apps took {span:.1f} s together"
        print(f"{flux}: {together}, {serial:.1f} s one after another")


if __name__ == "__main__":
    argv = sys.argv[1:]
    if len(argv) < 2:
        raise SystemExit("usage: flux_multisite.py HTEX_SITE FLUX_SITE [APPS [SECONDS [MPI...]]]")
    main(
        argv[0],
        argv[1],
        int(argv[2]) if len(argv) > 2 else 4,
        float(argv[3]) if len(argv) > 3 else 2,
        argv[4:] or list(COMPILERS),
    )
