"""Benchmark: the front end at scale (issue 18, item 6), before and after, in one run.

"before" is pwgen's source at a base revision (default: where this branch left `main`),
extracted with `git archive`; "after" is this checkout. Both run in this venv through
the same runner (`pwgen.cli.main` from the given source tree), alternating, so both see
the same machine load:

- start-up: `pwgen --version`, `--help`, `sites --help`, `lab --help`, `run --help`
  (median of N), next to the floor (`python -c pass`, a bare one-command typer app);
- the 1,000-site front end: `pwgen inventory` and `pwgen config` for 100 and 1,000
  synthetic sites whose facts are present (as `pwgen provision` leaves them).

With --before-path DIR, "before" also imports first from DIR (e.g. another typer,
installed there with `pip install --target DIR`). No lab, no root. Printed: medians in
ms and the after/before ratio.

    .venv/bin/python bench/frontend.py [--runs 7] [--base REV] [--before-path DIR]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from facts_samples import provisioned_facts  # noqa: E402  (the tests' facts file)

# `pwgen ARGS` from the source tree in $PWGEN_BENCH_SRC (not the venv's editable one).
RUNNER = (
    "import os, sys; sys.path.insert(0, os.environ['PWGEN_BENCH_SRC']); sys.argv[0] = 'pwgen'\n"
    "from pwgen.cli import main; main()"
)
BARE_TYPER = (
    "import typer\napp = typer.Typer(pretty_exceptions_enable=False)\n@app.command()\n"
    "def hello(name: str = 'x', count: int = 1) -> None:\n    pass\n"
    "@app.command()\ndef other() -> None:\n    pass\napp()"
)
FLOORS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bare typer app, hello --help": [sys.executable, "-c", BARE_TYPER, "hello", "--help"],
}
START_UP = [["--version"], ["--help"], ["sites", "--help"], ["lab", "--help"], ["run", "--help"]]
err = Console(stderr=True)


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `argv`; exit if it fails."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return wall, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def extract(base: str, into: Path) -> Path | None:
    """pwgen's source at `base` (git archive), or None when there is no such revision."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", base, "pwgen"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def write_project(project: Path, count: int) -> None:
    """`count` remote sites (slurm and pbspro) in sites.yaml, each with its facts file."""
    facts = project / ".pwgen" / "facts"
    facts.mkdir(parents=True)
    (project / ".pwgen" / "ssh").mkdir()
    (project / ".pwgen" / "ssh" / "config").write_text("# written by pwgen provision\n")
    lines = ["sites:"]
    for number in range(count):
        label = f"site{number:04d}"
        scheduler = "pbspro" if number % 4 == 3 else "slurm"
        lines += [
            f"  - label: {label}",
            f"    scheduler: {scheduler}",
            f"    host: 10.{number // 250}.{number % 250}.5",
            f"    user: user{number}",
            "    partition: compute",
            "    account: proj42",
            "    walltime: 02:00:00",
            "    max_blocks: 2",
            "    worker_init: |",
            "      module load python",
            "    env:",
            "      method: wheelhouse",
        ]
        record = provisioned_facts(label, scheduler=scheduler)
        (facts / f"{label}.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    (project / "sites.yaml").write_text("\n".join(lines) + "\n")


Job = tuple[str, str, list[str], dict[str, str]]  # row, column, argv, environment
Times = dict[tuple[str, str], list[tuple[float, float]]]  # (row, column) -> (wall, cpu)s


def pwgen_jobs(
    cases: dict[str, list[str]], trees: dict[str, Path], before_path: str | None
) -> list[Job]:
    """Each case (row) under each source tree (column); "before" imports from
    `before_path` first, if given."""
    return [
        (name, tree, [sys.executable, "-c", RUNNER, *args], tree_env(tree, source, before_path))
        for name, args in cases.items()
        for tree, source in trees.items()
    ]


def tree_env(tree: str, source: Path, before_path: str | None) -> dict[str, str]:
    env = {"PWGEN_BENCH_SRC": str(source)}
    if tree == "before" and before_path:
        env["PYTHONPATH"] = before_path
    return env


def measure(jobs: list[Job], runs: int, cwd: Path) -> Times:
    """Every job `runs` times, round after round, every other round in reverse order."""
    times: Times = {}
    for number in range(runs):
        for row, column, argv, env in jobs if number % 2 == 0 else reversed(jobs):
            run_env = {**os.environ, **env, "NO_COLOR": "1"}
            times.setdefault((row, column), []).append(timed(argv, cwd, run_env))
    return times


def table(title: str, times: Times, columns: list[str]) -> Table:
    """Median wall and CPU ms per row and column, and the ratio of the last two columns."""
    result = Table(title=title, title_justify="left")
    result.add_column("command")
    for column in columns:
        result.add_column(f"{column}: wall / CPU ms", justify="right")
    if len(columns) == 2:
        result.add_column("after / before (wall, CPU)", justify="right")
    for row in dict.fromkeys(row for row, _ in times):
        medians = [_medians(times[(row, column)]) for column in columns]
        cells = [f"{wall * 1000:,.0f} / {cpu * 1000:,.0f}" for wall, cpu in medians]
        if len(medians) == 2:
            (wall0, cpu0), (wall1, cpu1) = medians
            cells.append(f"{wall1 / wall0:.2f}, {cpu1 / cpu0:.2f}")
        result.add_row(row, *cells)
    return result


def _medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def sites_times(
    counts: list[int], trees: dict[str, Path], runs: int, scratch: Path, before_path: str | None
) -> Times:
    """inventory and config (and the pair) for each count of synthetic sites."""
    times: Times = {}
    for count in counts:
        project = scratch / f"sites{count}"
        write_project(project, count)
        err.print(f"{count:,} sites ...")
        cases = {
            f"inventory, {count:,} sites": ["inventory", "--from", "sites.yaml", "-o", "inv.yml"],
            f"config, {count:,} sites": ["config", "--sites", "sites.yaml", "-o", "config.py"],
        }
        measured = measure(pwgen_jobs(cases, trees, before_path), runs, project)
        for tree in trees:  # the pair, run by run
            pairs = zip(*(measured[(name, tree)] for name in cases), strict=True)
            both = [(a[0] + b[0], a[1] + b[1]) for a, b in pairs]
            measured[(f"inventory + config, {count:,} sites", tree)] = both
        times.update(measured)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--base", default=None, help="the 'before' revision (default: fork)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--before-path", default=None, help="imported first by 'before'")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="pwgen-frontend-bench-"))
    try:
        base, trees = source_trees(args.base, scratch)
        err.print("start-up ...")
        cases = {f"pwgen {' '.join(a)}": a for a in START_UP}
        floor_jobs: list[Job] = [(name, "floor", argv, {}) for name, argv in FLOORS.items()]
        jobs = pwgen_jobs(cases, trees, args.before_path) + floor_jobs
        start_up = measure(jobs, args.runs, scratch)
        sites = sites_times(args.sizes, trees, max(args.runs // 2, 3), scratch, args.before_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    columns = list(trees)
    console = Console(width=120)
    title = f"Issue 18 (6): start-up, median of {args.runs}, interleaved"
    pwgen_rows = {key: samples for key, samples in start_up.items() if key[1] != "floor"}
    console.print(table(title, pwgen_rows, columns))
    for name in FLOORS:
        wall, cpu = _medians(start_up[(name, "floor")])
        console.print(f"  floor, {name}: {wall * 1000:,.0f} / {cpu * 1000:,.0f} ms")
    title = f"Issue 18 (6): sites -> inventory, config (facts present); before = {base[:10]}"
    console.print(table(title, sites, columns))
    console.print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end")


def source_trees(base: str | None, scratch: Path) -> tuple[str, dict[str, Path]]:
    """The 'before' revision and the source trees to measure (before, if any, and after)."""
    fork = ["git", "-C", str(REPO), "merge-base", "HEAD", "main"]
    base = base or subprocess.run(fork, capture_output=True, text=True).stdout.strip()
    before = extract(base, scratch / "before") if base else None
    if before is None:
        err.print(f"no revision {base!r}: only 'after' is measured")
        return base, {"after": REPO}
    return base, {"before": before, "after": REPO}


if __name__ == "__main__":
    main()
