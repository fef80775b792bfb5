"""Benchmark: what `pwgen run` costs the controller while it idles with 8 sites connected
(issue 18, item 5).

Brings up a lab of its own (8 sites, 1 compute node each, prefix `pwci`, 10.234.0.0/16)
in a scratch project, provisions it, keeps one block per site (`min_blocks: 1`), writes
the config with `pwgen config`, and runs a workflow with `pwgen run --config` (the CLI)
that runs one task on every site (so every site has its block, workers connected,
tunnel and relay up), then idles until told to stop. After --settle seconds, the
controller's processes are sampled for --seconds: `pwgen run` and every process under it
(the interchanges, and the CPU of the short-lived children it reaped), and the sites' ssh
masters (found with `ssh -O check`: they detach; the tunnels are their forwards). The
sites' own processes (the lab's sshd, Slurm, worker pools) are not the controller's.

One run per variant, in one lab:
- `poll 10 ms`: the config with Parsl's default `poll_period=10` (pwgen's before);
- `generated`: the config as `pwgen config` writes it;
- `generated, no SQLAlchemy`: the same with SQLAlchemy unimportable in `pwgen run` too
  (a what-if; the interchanges run without it anyway, see pwgen.interchange_guard).

Printed, per variant and kind of process: how many, CPU % of one core over the window,
RSS and PSS at its end; the total and the total per site. The lab is always taken down.

    sudo flock /tmp/pwgen-lab.lock .venv/bin/python bench/controller_idle.py [--seconds 60]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from common import PWGEN, lab_up, project_ssh, pwgen
from rich.console import Console
from rich.table import Table

from pwgen.ssh.query import master_pid

PREFIX, SUBNET = "pwci", "10.234.0.0/16"
SITES = 8
REAPED = "children pwgen run reaped (ssh checks, scheduler commands)"
VARIANTS = ["poll 10 ms", "generated", "generated, no SQLAlchemy"]
TICKS = os.sysconf("SC_CLK_TCK")
err = Console(stderr=True)

WORKFLOW = """\
import pathlib, time
import parsl
from parsl import python_app

def ping():
    return 1

labels = sorted(label for label in parsl.dfk().executors if not label.startswith("_"))
futures = [python_app(ping, executors=[label])() for label in labels]
assert [future.result() for future in futures] == [1] * len(labels)
pathlib.Path("ready").write_text(" ".join(labels))
while not pathlib.Path("stop").exists():
    time.sleep(1)
"""


@dataclass
class Sample:
    kind: str
    cpu_seconds: float
    rss_kb: int
    pss_kb: int


def processes() -> dict[int, tuple[int, str]]:
    """Every process here: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (parent, command.strip())
    return found


def controller_pids(root: int, project: Path, labels: list[str]) -> dict[int, str]:
    """`root` and its descendants, and the sites' ssh masters: pid -> kind."""
    table = processes()
    chosen: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        chosen[pid] = kind_of(pid, root, table[pid][1]) if pid in table else "gone"
        frontier += [child for child, (parent, _) in table.items() if parent == pid]
    ssh = project_ssh(project)
    for label in labels:  # the masters detach from whoever started them
        master = master_pid(ssh.command(label))
        if master is not None:
            chosen.setdefault(master, "ssh masters (tunnels are their forwards)")
    return chosen


def kind_of(pid: int, root: int, command: str) -> str:
    if pid == root:
        return "pwgen run (workflow, DFK, supervisors, watch)"
    if "interchange" in command:
        return "interchange"
    if command.startswith(("ssh ", "ssh:")):
        return "ssh (not a master)"
    return command.split()[0].rsplit("/", 1)[-1] if command else "?"


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """CPU seconds (user + system) of a process itself, and of the children it reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = [int(field) for field in fields[11:15]]  # utime, stime, cutime, cstime
    return (ticks[0] + ticks[1]) / TICKS, (ticks[2] + ticks[3]) / TICKS


def memory_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of a process (smaps_rollup), in kB; 0s if it is gone."""
    values = {"Rss:": 0, "Pss:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, *rest = line.split()
            if name in values:
                values[name] = int(rest[0])
    except OSError:
        pass
    return values["Rss:"], values["Pss:"]


def sample(root: int, project: Path, labels: list[str], seconds: float) -> list[Sample]:
    """CPU over `seconds` and memory at its end of every controller process; the CPU
    of the short-lived children `pwgen run` reaped in between (ssh checks, scheduler
    commands) as one more sample."""
    pids = controller_pids(root, project, labels)
    before = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(seconds)
    samples = []
    for pid, kind in pids.items():
        start, end = before[pid], cpu_seconds(pid)
        if start is None or end is None:
            continue
        samples.append(Sample(kind, end[0] - start[0], *memory_kb(pid)))
        if pid == root:
            samples.append(Sample(REAPED, end[1] - start[1], 0, 0))
    return samples


def prepare(project: Path, lab_dir: Path) -> Path:
    """The lab up and provisioned; its sites file with one block kept per site."""
    lab_up(project, lab_dir, PREFIX, SUBNET, sites=SITES)
    sites = lab_dir / "sites.yaml"
    pwgen("provision", "--sites", str(sites), cwd=project)
    data = yaml.safe_load(sites.read_text())
    for site in data["sites"]:
        site["min_blocks"] = 1
    kept = project / "sites.yaml"
    kept.write_text(yaml.safe_dump(data, sort_keys=False))
    (project / "idle.py").write_text(WORKFLOW)
    return kept


def variant_config(project: Path, sites: Path, name: str) -> tuple[Path, dict[str, str]]:
    """The config file and the environment of one variant."""
    config = project / f"config_{name.split()[0]}.py"
    pwgen("config", "--sites", str(sites), "-o", str(config), cwd=project)
    env = dict(os.environ)
    if name == "poll 10 ms":
        text = config.read_text().replace("    poll_period=100,", "    poll_period=10,")
        config.write_text(text)
    if "SQLAlchemy" in name:  # a package that refuses to import, first on the path
        stub = project / "no_sqlalchemy" / "sqlalchemy"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text("raise ImportError('not in this variant')\n")
        env["PYTHONPATH"] = str(stub.parent)
    return config, env


def idle_run(project: Path, sites: Path, name: str, settle: float, seconds: float) -> list[Sample]:
    """`pwgen run` of the idle workflow; the samples taken once every site answered (None
    if the run failed to start)."""
    config, env = variant_config(project, sites, name)
    for marker in ("ready", "stop"):
        (project / marker).unlink(missing_ok=True)
    log_file = project / "run.log"
    with log_file.open("w") as log:
        run = subprocess.Popen(
            [str(PWGEN), "run", "idle.py", "--sites", str(sites), "--config", str(config)],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while not (project / "ready").exists():
            if run.poll() is not None or time.monotonic() > deadline:
                err.print(f"{name}: pwgen run ended or stalled:\n{log_file.read_text()[-3000:]}")
                return None
            time.sleep(0.2)
        err.print(f"{name}: every site answered; settling {settle:.0f} s, then {seconds:.0f} s")
        time.sleep(settle)
        labels = (project / "ready").read_text().split()
        return sample(run.pid, project, labels, seconds)
    finally:
        (project / "stop").write_text("")
        run.wait(120)
        _wait_for_interchanges(project)


def _wait_for_interchanges(project: Path, timeout: float = 60) -> None:
    """Until the run's interchanges (in their own sessions) are gone: the next run's
    ports must be free."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [
            pid
            for pid, (_, command) in processes().items()
            if "interchange" in command and _cwd(pid) == project
        ]
        if not left:
            return
        time.sleep(0.5)


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def report(results: dict[str, list[Sample]], seconds: float) -> Table:
    table = Table(
        title=f"Issue 18 (5): `pwgen run` idling with {SITES} lab sites connected, "
        f"{seconds:.0f} s window per variant",
        title_justify="left",
        caption="targets: <= 2 % of one core and <= 60 MB per site; PSS shares "
        "common pages among processes",
        caption_justify="left",
    )
    for column in ("variant", "processes", "count", "CPU % of a core", "RSS MB", "PSS MB"):
        table.add_column(column, justify="right" if column in ("count",) else "left")
    for variant, samples in results.items():
        kinds = sorted({s.kind for s in samples})
        rows = [(kind, [s for s in samples if s.kind == kind]) for kind in kinds]
        for name, group in [*rows, ("total", samples)]:
            table.add_row(variant, name, str(len(group)), *_cost(group, seconds, 1))
        table.add_row(variant, "per site (total / 8)", "", *_cost(samples, seconds, SITES))
        table.add_section()
    return table


def _cost(group: list[Sample], seconds: float, share: int) -> tuple[str, str, str]:
    cpu = 100 * sum(s.cpu_seconds for s in group) / seconds / share
    rss = sum(s.rss_kb for s in group) / 1024 / share
    pss = sum(s.pss_kb for s in group) / 1024 / share
    return f"{cpu:.2f}", f"{rss:,.0f}", f"{pss:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    project = Path(tempfile.mkdtemp(prefix="pwgen-idle-bench-"))
    lab_dir = project / "lab"
    results: dict[str, list[Sample]] = {}
    try:
        sites = prepare(project, lab_dir)
        for name in args.variants:
            for _ in range(3):  # a run that fails to start (a port taken) is tried again
                samples = idle_run(project, sites, name, args.settle, args.seconds)
                if samples is not None:
                    results[name] = samples
                    break
    finally:
        if (lab_dir / "lab.json").exists():
            pwgen("lab", "down", "--state-dir", str(lab_dir), cwd=project)
    Console(width=120).print(report(results, args.seconds))
    shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
