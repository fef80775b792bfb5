"""Benchmark: MPI apps packed by Flux against pwgen's MPIExecutor site (issue 16).

Brings up a lab of its own (2 sites x 2 compute nodes of 2 cores, prefix `pwbf`,
10.218.0.0/16) with the lab's Flux (`--flux`, the tarball of ../shared/flux or
$PWGEN_FLUX_TARBALL): lab1 is an `executor: mpi` site, lab2 a Flux site, both with
2-node blocks. Provisions them, writes the config, and in one DataFlowKernel runs,
rounds interleaved:

- `flux`: APPS MPI apps of 2 ranks, SECONDS each, submitted at once to the Flux site
  (`{"num_tasks": 2}`): Flux packs them into the block's 4 cores;
- `mpi`: the same apps on the MPIExecutor site (`num_nodes: 1, ranks_per_node: 2`):
  Parsl gives each a whole node, so 2 run at once;
- `serial`: the same apps on the Flux site, one after another.

Then no-op python apps through the Flux site: as Flux jobs (`{"num_tasks": 1}`, one
`flux run` each) and plain (run in the block's pool), tasks/s.

    sudo .venv/bin/python bench/flux.py [--rounds 3] [--apps 8] [--seconds 2] [--noops 200]
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from common import PWGEN, project_ssh, pwgen
from rich.console import Console
from rich.table import Table

PREFIX, SUBNET = "pwbf", "10.218.0.0/16"
SOURCE = Path(__file__).parents[1] / "examples" / "mpi_hello.c"
TARBALL = Path(__file__).parents[2] / "shared" / "flux" / "flux-core-0.88.0.tar.gz"
err = Console(stderr=True)


def build(source: str, parsl_resource_specification: Any = None) -> str:
    """mpicc on the site (OpenMPI, Debian's default); the binary's path there."""
    import hashlib
    import os
    import subprocess

    binary = os.path.expanduser(f"~/mpi_hello-{hashlib.sha256(source.encode()).hexdigest()[:8]}")
    if not os.path.exists(binary):
        with open(f"{binary}.c", "w") as out:
            out.write(source)
        subprocess.run(["mpicc", "-O2", "-o", binary, f"{binary}.c"], check=True)
    return binary


def on_flux(binary: str, seconds: float, parsl_resource_specification: Any = None) -> str:
    return f"{binary} {seconds} > /dev/null"


def on_mpi(binary: str, seconds: float, parsl_resource_specification: Any = None) -> str:
    return f"$PARSL_MPI_PREFIX {binary} {seconds} > /dev/null"


def noop(parsl_resource_specification: Any = None) -> int:
    return 0


def one_after_another(count: int, app: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """`count` calls of `app`, each waiting for the one before it; nothing left to wait for."""
    for _ in range(count):
        app(*args, **kwargs).result()
    return []


def makespan(submit: Callable[[], list[Any]]) -> float:
    started = time.perf_counter()
    for future in submit():
        future.result()
    return time.perf_counter() - started


def measure(config_file: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    import importlib.util

    import parsl

    spec = importlib.util.spec_from_file_location("pwbf_parsl_config", config_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dfk = parsl.load(module.config)
    found: dict[str, list[float]] = {"flux": [], "mpi": [], "serial": [], "jobs": [], "pool": []}
    try:
        flux_bin = parsl.python_app(build, executors=["lab2"])(SOURCE.read_text()).result()
        mpi_spec = {"num_nodes": 1, "ranks_per_node": 1}
        mpi_bin = parsl.python_app(build, executors=["lab1"])(
            SOURCE.read_text(), parsl_resource_specification=mpi_spec
        ).result()
        flux_app = parsl.bash_app(on_flux, executors=["lab2"])
        mpi_app = parsl.bash_app(on_mpi, executors=["lab1"])
        noop_app = parsl.python_app(noop, executors=["lab2"])
        ranks = {"num_tasks": 2}
        one_node = {"num_nodes": 1, "ranks_per_node": 2, "launcher_options": "--mpi=pmix"}
        kinds: dict[str, Callable[[], list[Any]]] = {
            "flux": lambda: [
                flux_app(flux_bin, args.seconds, parsl_resource_specification=ranks)
                for _ in range(args.apps)
            ],
            "mpi": lambda: [
                mpi_app(mpi_bin, args.seconds, parsl_resource_specification=one_node)
                for _ in range(args.apps)
            ],
            "serial": lambda: one_after_another(
                args.apps, flux_app, flux_bin, args.seconds, parsl_resource_specification=ranks
            ),
            "jobs": lambda: [
                noop_app(parsl_resource_specification={"num_tasks": 1}) for _ in range(args.noops)
            ],
            "pool": lambda: [noop_app() for _ in range(args.noops)],
        }
        makespan(kinds["flux"])  # warm: blocks up on both sites
        makespan(kinds["mpi"])
        for number in range(args.rounds):
            order = list(kinds) if number % 2 == 0 else list(reversed(kinds))
            for kind in order:
                found[kind].append(makespan(kinds[kind]))
            err.print(
                f"round {number + 1}/{args.rounds}: "
                + ", ".join(f"{kind} {found[kind][-1]:.1f} s" for kind in kinds)
            )
    finally:
        dfk.cleanup()
        parsl.clear()
    return found


def prepare(project: Path, lab_dir: Path, tarball: str) -> Path:
    """The lab (lab1 made an MPI site), provisioned; the config file."""
    up = ["up", "--site-count", "2", "--compute-nodes", "2", "--name", PREFIX]
    pwgen(
        "lab", *up, "--subnet", SUBNET, "--flux", tarball, "--state-dir", str(lab_dir), cwd=project
    )
    sites_file = lab_dir / "sites.yaml"
    sites = yaml.safe_load(sites_file.read_text())
    sites["sites"][0].update({"executor": "mpi", "nodes_per_block": 2})
    bench_sites = project / "sites.yaml"
    bench_sites.write_text(yaml.safe_dump(sites))
    known = ["--known-hosts", str(lab_dir / "known_hosts")]
    pwgen("provision", "--sites", str(bench_sites), *known, cwd=project)
    config_file = project / "parsl_config.py"
    pwgen("config", "--sites", str(bench_sites), "-o", str(config_file), cwd=project)
    return config_file


def report(found: dict[str, list[float]], args: argparse.Namespace) -> None:
    median = {kind: statistics.median(values) for kind, values in found.items()}
    table = Table(
        title=f"Issue 16 benchmark: {args.apps} MPI apps of 2 ranks x {args.seconds:g} s in "
        f"one 2-node block (4 cores), median of {args.rounds} rounds, interleaved",
        title_justify="left",
        caption=f"{os.cpu_count()} CPUs for the whole lab; ideal packed makespan "
        f"{args.apps * 2 / 4 * args.seconds:.0f} s, serial {args.apps * args.seconds:.0f} s",
        caption_justify="left",
    )
    for column in ("kind", "makespan or tasks/s", "rounds", "vs flux"):
        table.add_column(column, justify="right")
    for kind, label in (
        ("flux", "Flux site, packed"),
        ("mpi", "MPIExecutor site"),
        ("serial", "Flux site, one after another"),
    ):
        values = ", ".join(f"{v:.1f}" for v in found[kind])
        table.add_row(
            label, f"{median[kind]:.1f} s", values, f"{median[kind] / median['flux']:.2f}x"
        )
    for kind, label in (("jobs", "no-op as Flux jobs"), ("pool", "no-op in the pool")):
        rates = [args.noops / v for v in found[kind]]
        table.add_row(
            label,
            f"{statistics.median(rates):,.1f} tasks/s",
            ", ".join(f"{r:,.1f}" for r in rates),
            "",
        )
    Console(width=120).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--apps", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--noops", type=int, default=200)
    args = parser.parse_args()
    tarball = os.environ.get("PWGEN_FLUX_TARBALL", str(TARBALL))
    os.environ["PATH"] = f"{PWGEN.parent}{os.pathsep}{os.environ['PATH']}"
    project = Path(tempfile.mkdtemp(prefix="pwgen-flux-bench-"))
    lab_dir = project / "lab"
    os.chdir(project)
    try:
        found = measure(prepare(project, lab_dir, tarball), args)
    finally:
        ssh = project_ssh(project)
        for label in ("lab1", "lab2"):
            ssh.stop_master(label)
        if (lab_dir / "lab.json").exists():
            pwgen("lab", "down", "--state-dir", str(lab_dir), cwd=project)
    report(found, args)


if __name__ == "__main__":
    main()
