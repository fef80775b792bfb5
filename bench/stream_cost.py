"""Benchmark: the cost of bringing bash apps' stdout/stderr back from sites (issue 13).

Brings up a lab of its own (2 sites, 1 compute node each, prefix `pwbs`,
10.236.0.0/16) in a scratch project, provisions it and writes the config with
`pwgen config`. Then, in one DataFlowKernel with both sites, rounds of N bash apps
(spread over the two sites) alternate between two kinds, side by side:

- `streams`: each app has `stdout=` and `stderr=` paths on this machine, which pwgen
  writes on the site and copies back (batched rsync over each site's master) before
  the app's future completes; every file is checked afterwards;
- `plain`: the same apps without streams.

Printed: median tasks/s of each kind and their ratio. The lab is always taken down.

    sudo .venv/bin/python bench/stream_cost.py [--rounds 3] [--tasks 500]
"""

import argparse
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import lab_up, project_ssh, pwgen
from rich.console import Console
from rich.table import Table

PREFIX, SUBNET = "pwbs", "10.236.0.0/16"
ROUND_TIMEOUT = 600.0
err = Console(stderr=True)


def hello(i: int, stdout: Any = None, stderr: Any = None) -> str:
    return f"echo out {i}; echo err {i} >&2"


def one_round(apps: list[Any], tasks: int, streams: Path | None) -> float:
    """`tasks` bash apps over the sites; with `streams`, each with its stdout/stderr."""
    if streams is not None:
        shutil.rmtree(streams, ignore_errors=True)
    started = time.perf_counter()
    futures = []
    for i in range(tasks):
        app = apps[i % len(apps)]
        if streams is None:
            futures.append(app(i))
        else:
            futures.append(
                app(i, stdout=str(streams / f"{i}.out"), stderr=str(streams / f"{i}.err"))
            )
    _, pending = concurrent.futures.wait(futures, timeout=ROUND_TIMEOUT)
    seconds = time.perf_counter() - started
    if pending:
        sys.exit(f"{len(pending)} of {tasks} tasks still pending after {ROUND_TIMEOUT:.0f} s")
    for future in futures:
        future.result()
    if streams is not None:  # every stream is here, complete
        for i in range(tasks):
            assert (streams / f"{i}.out").read_text() == f"out {i}\n"
            assert (streams / f"{i}.err").read_text().endswith(f"err {i}\n")
    return tasks / seconds


def measure(config_file: Path, project: Path, rounds: int, tasks: int) -> dict[str, list[float]]:
    import importlib.util

    import parsl

    spec = importlib.util.spec_from_file_location("pwbs_parsl_config", config_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    labels = [ex.label for ex in module.config.executors]
    rates: dict[str, list[float]] = {"streams": [], "plain": []}
    dfk = parsl.load(module.config)
    try:
        apps = [parsl.bash_app(hello, executors=[label]) for label in labels]
        one_round(apps, max(tasks // 5, 50), project / "warm")  # blocks up, masters warm
        for number in range(rounds):
            order = ["streams", "plain"] if number % 2 == 0 else ["plain", "streams"]
            for kind in order:
                streams = project / "streams" if kind == "streams" else None
                rates[kind].append(one_round(apps, tasks, streams))
            err.print(
                f"round {number + 1}/{rounds}: streams {rates['streams'][-1]:,.0f}, "
                f"plain {rates['plain'][-1]:,.0f} tasks/s"
            )
    finally:
        dfk.cleanup()
        parsl.clear()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=500)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    project = Path(tempfile.mkdtemp(prefix="pwgen-streams-bench-"))
    lab_dir = project / "lab"
    sites = lab_dir / "sites.yaml"
    os.chdir(project)
    lab = ["--state-dir", str(lab_dir)]
    try:
        lab_up(project, lab_dir, PREFIX, SUBNET, sites=2)
        pwgen("provision", "--sites", str(sites), cwd=project)
        config_file = project / "parsl_config.py"
        pwgen("config", "--sites", str(sites), "-o", str(config_file), cwd=project)
        rates = measure(config_file, project, args.rounds, args.tasks)
    finally:
        ssh = project_ssh(project)
        for label in ("lab1", "lab2"):
            ssh.stop_master(label)
        if (lab_dir / "lab.json").exists():
            pwgen("lab", "down", *lab, cwd=project)
    streams, plain = statistics.median(rates["streams"]), statistics.median(rates["plain"])
    table = Table(
        title=f"Issue 13 benchmark: {args.tasks} bash apps over 2 lab sites, "
        f"median of {args.rounds} rounds each, interleaved",
        title_justify="left",
        caption=f"{os.cpu_count()} CPUs; streams: stdout + stderr per app, brought back "
        "before each future completes",
        caption_justify="left",
    )
    for column in ("kind", "tasks/s", "rounds"):
        table.add_column(column, justify="right")
    for kind, median in (("with streams", streams), ("without", plain)):
        values = rates["streams" if kind == "with streams" else "plain"]
        table.add_row(kind, f"{median:,.0f}", ", ".join(f"{v:,.0f}" for v in values))
    table.add_row("ratio", f"{streams / plain:.2f}", "")
    Console(width=110).print(table)


if __name__ == "__main__":
    main()
