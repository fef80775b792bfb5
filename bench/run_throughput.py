"""Benchmark: no-op tasks/s through a tunnelled lab site vs. a local HTEX, and `pwgen run`
to first result (issue 5), measured side by side in one run.

Brings up a lab of its own (1 site, 1 compute node, prefix `pwbt`, 10.235.0.0/16) in a
scratch project directory, provisions it with the CLI and writes the config with
`pwgen config`. Then, in this one process:

1. one DataFlowKernel with two executors: the generated config's site executor (HTEX
   here, workers on the lab's compute node behind ssh forward + relay) and a plain HTEX
   with LocalProvider on loopback, both with the same `max_workers_per_node` (the
   compute node has as many CPUs as this machine); rounds of no-op tasks alternate
   between the two (which one goes first alternates too); median tasks/s per executor;
2. `pwgen run` (the CLI, a subprocess) of a workflow that sends one task to the site
   and prints a timestamp when its result arrives: process start -> that line, and the
   whole run's wall time.

The lab is always taken down and the ssh master stopped, and the bench checks that
none of its interchanges, worker pools or masters is left running.

    sudo .venv/bin/python bench/run_throughput.py [--rounds 5] [--tasks 2000] [--runs 3]

Targets (issue 5): site / local tasks/s >= 0.9; `pwgen run` -> first result <= 5 s.
"""

import argparse
import concurrent.futures
import importlib.util
import json
import os
import pwd
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from common import PWGEN, lab_up, project_ssh, pwgen
from rich.console import Console
from rich.table import Table

from pwgen.poll import poll

PREFIX = "pwbt"
SUBNET = "10.235.0.0/16"
LOCAL_LABEL = "loopback"
RATIO_TARGET = 0.9
FIRST_RESULT_TARGET = 5.0
WARMUP_TIMEOUT = 180.0  # the site's block: sbatch, slurmd, worker pool through the tunnel
ROUND_TIMEOUT = 300.0
FIRST_MARK = "pwbt-first-result"
# Set in this process, inherited by everything it starts: tells our processes from others'.
MARKER = "PWGEN_BENCH_RUN"
LEFTOVER_PATTERN = "parsl: HTEX|process_worker_pool"

FIRST_RESULT_WORKFLOW = f'''"""One task on the site in argv[1]; prints when its result is back."""

import sys
import time

from parsl import python_app


def one() -> int:
    return 1


value = python_app(one, executors=[sys.argv[1]])().result()
print(f"{FIRST_MARK} {{time.time():.6f}} {{value}}", flush=True)
'''

err = Console(stderr=True)


@dataclass
class Throughput:
    site: list[float] = field(default_factory=list)  # tasks/s per round
    local: list[float] = field(default_factory=list)
    site_first: list[bool] = field(default_factory=list)  # which executor went first
    workers: dict[str, int] = field(default_factory=dict)
    managers: dict[str, int] = field(default_factory=dict)


@dataclass
class FirstResult:
    first: list[float] = field(default_factory=list)  # s from process start to the line
    total: list[float] = field(default_factory=list)  # s, whole `pwgen run`
    load: list[float] = field(default_factory=list)  # s, parsl.load (run manifest)
    cleanup: list[float] = field(default_factory=list)  # s, dfk.cleanup (run manifest)


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("pwbt_parsl_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def noop() -> None:
    return None


def workers_of(executor: Any) -> tuple[int, int]:
    """(workers, managers) connected to an HTEX's interchange."""
    managers = [m for m in executor.connected_managers() if m["active"]]
    return sum(m["worker_count"] for m in managers), len(managers)


def wait_for_workers(executors: list[Any], workers: int) -> None:

    def counts() -> dict[str, int]:
        return {ex.label: workers_of(ex)[0] for ex in executors}

    connected = poll(
        lambda: all(n >= workers for n in counts().values()), WARMUP_TIMEOUT, interval=0.5
    )
    if not connected:
        sys.exit(f"workers did not connect within {WARMUP_TIMEOUT:.0f} s: {counts()}")


def one_round(app: Callable[[], Any], tasks: int) -> float:
    """Submit `tasks` no-op tasks, wait for every result; return tasks/s."""
    started = time.perf_counter()
    futures = [app() for _ in range(tasks)]
    _, pending = concurrent.futures.wait(futures, timeout=ROUND_TIMEOUT)
    seconds = time.perf_counter() - started
    if pending:
        sys.exit(f"{len(pending)} of {tasks} tasks still pending after {ROUND_TIMEOUT:.0f} s")
    for future in futures:
        future.result()
    return tasks / seconds


def measure_throughput(config_file: Path, rounds: int, tasks: int) -> Throughput:
    """Both executors in one DFK; interleaved rounds of no-op tasks."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    generated = load_module(config_file)
    (site,) = generated.config.executors
    workers = site.workers_per_node  # from facts: the compute node's CPUs
    if workers != os.cpu_count():
        err.print(
            f"[yellow]note: {workers} workers per node on the site, {os.cpu_count()} CPUs here"
        )
    site.max_workers_per_node = workers  # explicit on both sides (the generated one: all CPUs)
    local = HighThroughputExecutor(
        label=LOCAL_LABEL,
        address="127.0.0.1",
        encrypted=True,  # as the site executor
        cores_per_worker=site.cores_per_worker,
        max_workers_per_node=workers,
        provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
    )
    config = Config(
        executors=[site, local],
        run_dir=generated.config.run_dir,
        strategy_period=generated.config.strategy_period,
    )
    result = Throughput()
    dfk = parsl.load(config)
    try:
        apps = {
            label: parsl.python_app(noop, executors=[label]) for label in (site.label, LOCAL_LABEL)
        }
        wait_for_workers([site, local], workers)
        for app in apps.values():  # warm-up: imports, connections, caches
            one_round(app, max(tasks // 10, 100))
        for ex in (site, local):
            result.workers[ex.label], result.managers[ex.label] = workers_of(ex)
        for number in range(rounds):
            site_first = number % 2 == 0
            order = [site.label, LOCAL_LABEL] if site_first else [LOCAL_LABEL, site.label]
            rates = {label: one_round(apps[label], tasks) for label in order}
            result.site.append(rates[site.label])
            result.local.append(rates[LOCAL_LABEL])
            result.site_first.append(site_first)
            err.print(
                f"round {number + 1}/{rounds}: {site.label} {rates[site.label]:,.0f}, "
                f"{LOCAL_LABEL} {rates[LOCAL_LABEL]:,.0f} tasks/s"
            )
    finally:
        dfk.cleanup()
        parsl.clear()
    return result


def measure_first_result(project: Path, sites: Path, label: str, runs: int) -> FirstResult:
    """`pwgen run` as a user starts it: process start -> first result, and the whole run."""
    workflow = project / "first_result.py"
    workflow.write_text(FIRST_RESULT_WORKFLOW)
    runs_dir = project / ".pwgen" / "runs"
    result = FirstResult()
    for number in range(runs):
        before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
        stderr_file = project / f"first_result.{number}.stderr"
        argv = [str(PWGEN), "run", str(workflow), "--sites", str(sites), "--", label]
        with stderr_file.open("w") as stderr:
            started_wall, started = time.time(), time.perf_counter()
            process = subprocess.Popen(argv, cwd=project, stdout=subprocess.PIPE, stderr=stderr)
            assert process.stdout is not None
            stamp = None
            for line in process.stdout:
                words = line.decode().split()
                if words[:1] == [FIRST_MARK]:
                    stamp = float(words[1])
            code = process.wait()
            total = time.perf_counter() - started
        if code != 0 or stamp is None:
            sys.exit(f"`pwgen run` exited {code}:\n{stderr_file.read_text()}")
        (run_dir,) = set(runs_dir.iterdir()) - before
        timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
        result.first.append(stamp - started_wall)
        result.total.append(total)
        result.load.append(timings["load"])
        result.cleanup.append(timings["cleanup"])
        err.print(
            f"pwgen run {number + 1}/{runs}: first result after {stamp - started_wall:.2f} s, "
            f"done after {total:.2f} s"
        )
    return result


def pgrep(pattern: str) -> dict[int, str]:
    done = subprocess.run(["pgrep", "-fa", pattern], capture_output=True, text=True)
    found = {}
    for line in done.stdout.splitlines():
        pid, _, command = line.partition(" ")
        found[int(pid)] = command
    return found


def is_ours(pid: int, marker: str, project: Path, site_uid: int | None) -> bool:
    """Started by this bench (environment marker), run as the lab's user, or in our project;
    zombies count as dead."""
    proc = Path("/proc") / str(pid)
    try:
        if proc.joinpath("stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
        uid = int(proc.joinpath("status").read_text().split("\nUid:")[1].split()[0])
        environ = proc.joinpath("environ").read_bytes().split(b"\0")
        cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return uid == site_uid or f"{MARKER}={marker}".encode() in environ or str(project) in cmdline


def leftovers(
    baseline: set[int], marker: str, project: Path, site_uid: int | None, grace: float = 10.0
) -> list[str]:
    """Our interchanges and worker pools still running (waiting up to `grace` s for them)."""

    def ours() -> list[str]:
        return [
            f"{pid} {command}"
            for pid, command in pgrep(LEFTOVER_PATTERN).items()
            if pid not in baseline and is_ours(pid, marker, project, site_uid)
        ]

    poll(lambda: not ours(), grace, interval=0.5)
    return ours()


def mark(ok: bool) -> str:
    return "[green]✓ pass" if ok else "[red]✗ FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds per executor")
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per round")
    parser.add_argument("--runs", type=int, default=3, help="`pwgen run` repetitions")
    args = parser.parse_args()

    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    marker = secrets.token_hex(8)
    os.environ[MARKER] = marker
    project = Path(tempfile.mkdtemp(prefix="pwgen-throughput-bench-"))
    lab_dir = project / "lab"
    sites = lab_dir / "sites.yaml"
    ssh = project_ssh(project)
    os.chdir(project)  # the generated config's run_dir is relative, as for a user
    baseline = set(pgrep(LEFTOVER_PATTERN))
    load_before = os.getloadavg()
    err.print(f"project {project}; load average {load_before[0]:.2f}")

    label, site_uid = "lab1", None
    lab = ["--state-dir", str(lab_dir)]
    checks: dict[str, list[str]] = {}
    try:
        lab_up(project, lab_dir, PREFIX, SUBNET, sites=1)
        site = yaml.safe_load(sites.read_text())["sites"][0]
        label, site_uid = site["label"], pwd.getpwnam(site["user"]).pw_uid
        err.print(f"lab up; provisioning {label}")
        provision_s = pwgen("provision", "--sites", str(sites), cwd=project)
        config_file = project / "parsl_config.py"
        pwgen("config", "--sites", str(sites), "-o", str(config_file), cwd=project)
        throughput = measure_throughput(config_file, args.rounds, args.tasks)
        first = measure_first_result(project, sites, label, args.runs)
    finally:
        ssh.stop_master(label)  # ssh fails harmlessly when provisioning never wrote it
        checks["before lab down"] = leftovers(baseline, marker, project, site_uid)
        if ssh.master_running(label):
            checks["before lab down"].append(f"ssh master for {label}")
        if (lab_dir / "lab.json").exists():
            pwgen("lab", "down", *lab, cwd=project)
        checks["after lab down"] = leftovers(baseline, marker, project, site_uid, grace=2.0)
    load_after = os.getloadavg()

    site_rate = statistics.median(throughput.site)
    local_rate = statistics.median(throughput.local)
    ratio = site_rate / local_rate
    first_s = statistics.median(first.first)
    clean = not any(checks.values())

    table = Table(
        title=f"Issue 5 benchmark: lab site {label} (1 compute node, ssh forward + relay) "
        f"vs. HTEX + LocalProvider on loopback",
        title_justify="left",
        caption=f"{os.cpu_count()} CPUs; load average (1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; cold provision {provision_s:.1f} s",
        caption_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("")
    for name in (label, LOCAL_LABEL):
        pools = throughput.managers[name]
        table.add_row(f"workers, {name}", f"{throughput.workers[name]} ({pools} pool)", "equal", "")
    per = f"median of {args.rounds} x {args.tasks:,}"
    table.add_row(f"no-op tasks/s, {label}, {per}", f"{site_rate:,.0f}", "", "")
    table.add_row(f"no-op tasks/s, {LOCAL_LABEL}, {per}", f"{local_rate:,.0f}", "", "")
    table.add_row(
        f"ratio {label} / {LOCAL_LABEL}",
        f"{ratio:.2f}",
        f">= {RATIO_TARGET}",
        mark(ratio >= RATIO_TARGET),
    )
    table.add_row(
        f"`pwgen run` start -> first result, median of {args.runs}",
        f"{first_s:.2f} s",
        f"<= {FIRST_RESULT_TARGET:.0f} s",
        mark(first_s <= FIRST_RESULT_TARGET),
    )
    table.add_row("`pwgen run` total", f"{statistics.median(first.total):.2f} s", "", "")
    table.add_row(
        "  of which parsl.load / dfk.cleanup",
        f"{statistics.median(first.load):.2f} / {statistics.median(first.cleanup):.2f} s",
        "",
        "",
    )
    left = "; ".join(f"{when}: {', '.join(found)}" for when, found in checks.items() if found)
    table.add_row(
        "left running: interchange, worker pool, master", left or "none", "none", mark(clean)
    )

    rounds = Table(title="rounds (tasks/s)", title_justify="left")
    for column in ("round", "first", label, LOCAL_LABEL, "ratio"):
        rounds.add_column(column, justify="right")
    for number, (s, lo, site_first) in enumerate(
        zip(throughput.site, throughput.local, throughput.site_first, strict=True), 1
    ):
        first_label = label if site_first else LOCAL_LABEL
        rounds.add_row(str(number), first_label, f"{s:,.0f}", f"{lo:,.0f}", f"{s / lo:.2f}")
    runs = Table(title="`pwgen run` (s)", title_justify="left")
    for column in ("run", "first result", "total", "load", "cleanup"):
        runs.add_column(column, justify="right")
    for number, row in enumerate(
        zip(first.first, first.total, first.load, first.cleanup, strict=True), 1
    ):
        runs.add_row(str(number), *(f"{value:.2f}" for value in row))

    console = Console(width=110)
    console.print(table)
    console.print(rounds)
    console.print(runs)
    if not clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
