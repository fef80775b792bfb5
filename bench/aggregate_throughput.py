"""Benchmark: aggregate no-op throughput through 4 lab sites at once vs one loopback HTEX
(issue 18), side by side in one DataFlowKernel, and where the ceiling is.

Brings up a lab of its own (4 sites x 1 compute node, prefix `pwag`, 10.225.0.0/16) in a
scratch project, provisions it and writes the config with `pwgen config` (the CLI).
Then one DataFlowKernel holds the 4 generated site executors (HTEX, workers behind ssh
forward + relay) and a plain HTEX with LocalProvider on loopback with as many workers as
one site. Rounds of TASKS no-op tasks alternate between

- loopback: every task to the local HTEX;
- 4 sites: the same number of tasks dealt round-robin to the 4 sites (4x the workers);
- submit only: the DataFlowKernel's own cost per task, without waiting for any result
  (tasks to the local HTEX, time to return from the app call): the ceiling every
  executor shares.

The lab is always taken down; the bench checks no interchange or pool is left.

    sudo .venv/bin/python bench/aggregate_throughput.py [--rounds 5] [--tasks 4000]

Target (issue 18): 4 sites / loopback >= 0.9.
"""

import argparse
import concurrent.futures
import itertools
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from common import lab_up, project_ssh, pwgen
from rich.console import Console
from rich.table import Table
from run_throughput import (
    LEFTOVER_PATTERN,
    MARKER,
    leftovers,
    load_module,
    one_round,
    pgrep,
    wait_for_workers,
)

PREFIX, SUBNET = "pwag", "10.225.0.0/16"
SITES = 4
LOCAL_LABEL = "loopback"
TARGET = 0.9

err = Console(stderr=True)


def noop() -> None:
    """Defined here, in __main__: Parsl ships it by value (the sites lack this directory)."""
    return None


def round_robin(apps: list[Callable[[], Any]]) -> Callable[[], Any]:
    """One app call per call, dealt to `apps` in turn."""
    turn = itertools.cycle(apps)
    return lambda: next(turn)()


def submit_rate(app: Callable[[], Any], tasks: int) -> float:
    """Tasks/s the DataFlowKernel accepts (app call returns), results awaited after."""
    started = time.perf_counter()
    futures = [app() for _ in range(tasks)]
    seconds = time.perf_counter() - started
    concurrent.futures.wait(futures)
    return tasks / seconds


def measure(config_file: Path, rounds: int, tasks: int) -> dict[str, list[float]]:
    """Tasks/s per round: loopback, the 4 sites together, and submit only."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    generated = load_module(config_file)
    sites = list(generated.config.executors)
    workers = sites[0].workers_per_node
    local = HighThroughputExecutor(
        label=LOCAL_LABEL,
        address="127.0.0.1",
        encrypted=True,  # as the site executors
        cores_per_worker=sites[0].cores_per_worker,
        max_workers_per_node=workers,
        provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),  # type: ignore[no-untyped-call]
    )
    config = Config(executors=[*sites, local], run_dir=generated.config.run_dir)
    rates: dict[str, list[float]] = {"loopback": [], f"{SITES} sites": [], "submit only": []}
    dfk = parsl.load(config)
    try:
        site_apps = [parsl.python_app(noop, executors=[ex.label]) for ex in sites]
        local_app = parsl.python_app(noop, executors=[LOCAL_LABEL])
        spread = round_robin(site_apps)
        wait_for_workers([*sites, local], workers)
        for app in (local_app, spread):  # warm-up: imports, connections, caches
            one_round(app, max(tasks // 10, 100))
        for number in range(rounds):
            order = [LOCAL_LABEL, "sites"] if number % 2 == 0 else ["sites", LOCAL_LABEL]
            for which in order:
                key = "loopback" if which == LOCAL_LABEL else f"{SITES} sites"
                rates[key].append(one_round(local_app if which == LOCAL_LABEL else spread, tasks))
            rates["submit only"].append(submit_rate(local_app, tasks))
            err.print(f"round {number + 1}/{rounds}: " + ", ".join(
                f"{name} {values[-1]:,.0f}" for name, values in rates.items()
            ) + " tasks/s")  # fmt: skip
    finally:
        dfk.cleanup()
        parsl.clear()
    return rates


def print_table(rates: dict[str, list[float]], rounds: int, tasks: int) -> None:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    table = Table(
        title=f"no-op tasks/s, median of {rounds} rounds x {tasks:,} tasks, one DataFlowKernel",
        title_justify="left",
        caption=f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}",
        caption_justify="left",
    )
    for column in ("executors", "tasks/s", "ratio to loopback"):
        table.add_column(column, justify="right" if column != "executors" else "left")
    for name, rate in medians.items():
        table.add_row(name, f"{rate:,.0f}", f"{rate / medians['loopback']:.2f}")
    ratio = medians[f"{SITES} sites"] / medians["loopback"]
    Console(width=110).print(table)
    verdict = "pass" if ratio >= TARGET else "FAIL"
    print(f"{SITES} sites / loopback: {ratio:.2f} (target >= {TARGET}): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=4000)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    marker = secrets.token_hex(8)
    os.environ[MARKER] = marker
    project = Path(tempfile.mkdtemp(prefix="pwgen-bench-aggregate-"))
    lab_dir = project / "lab"
    sites_file = lab_dir / "sites.yaml"
    os.chdir(project)  # the generated config's run_dir is relative, as for a user
    baseline = set(pgrep(LEFTOVER_PATTERN))
    labels: list[str] = []
    try:
        lab_up(project, lab_dir, PREFIX, SUBNET, SITES)
        labels = [site["label"] for site in yaml.safe_load(sites_file.read_text())["sites"]]
        pwgen("provision", "--sites", str(sites_file), cwd=project)
        config_file = project / "parsl_config.py"
        pwgen("config", "--sites", str(sites_file), "-o", str(config_file), cwd=project)
        rates = measure(config_file, args.rounds, args.tasks)
    finally:
        for label in labels:
            project_ssh(project).stop_master(label)
        left = leftovers(baseline, marker, project, None)
        if (lab_dir / "lab.json").exists():
            pwgen("lab", "down", "--state-dir", str(lab_dir), cwd=project)
    print_table(rates, args.rounds, args.tasks)
    if left:
        sys.exit(f"left running: {left}")


if __name__ == "__main__":
    main()
