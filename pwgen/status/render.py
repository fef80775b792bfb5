"""Rendering a status report as rich tables."""

import os

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pwgen.manifest import RunState
from pwgen.status.report import StatusReport
from pwgen.status.tasks import RunTasks


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


_STATE_STYLE = {
    RunState.OK: "green",
    RunState.RUNNING: "cyan",
    RunState.STARTING: "cyan",
    RunState.CRASHED: "red",
    RunState.FAILED: "red",
    RunState.INTERRUPTED: "yellow",
    RunState.TORN_DOWN: "yellow",
}


def _styled(text: str, style: str | None) -> str:
    """`text` (escaped: never read as rich markup) in `style`."""
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def sites_table(report: StatusReport) -> Table:
    table = Table(title=escape(f"sites ({report.state_dir})"), title_justify="left")
    for column in ("site", "facts", "ssh master", "reachable", "blocks"):
        table.add_column(column, no_wrap=column == "site")
    for site in report.sites:
        if site.local:
            table.add_row(site.label, "local site", "", "this machine", "")
            continue
        facts = site.facts or {}
        facts_text = (
            _styled(
                f"env {facts.get('env_hash') or '?'}, Parsl {facts.get('parsl') or '?'}, "
                f"Python {facts.get('python') or '?'}",
                None,
            )
            if site.facts
            else _styled(site.facts_error or "none", "red")
        )
        master = f"pid {site.master_pid}" if site.master_pid else "none"
        if site.reachable:
            reachable = _styled("yes" + (f" ({site.user})" if site.user else ""), None)
        else:
            reachable = _styled(f"no: {site.error or ''}", "red")
        counts: dict[str, int] = {}
        for job in site.blocks:
            counts[job.state] = counts.get(job.state, 0) + 1
        blocks = escape(", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())))
        if site.blocks_error:
            blocks = _styled(f"? ({site.blocks_error})", "red")
        table.add_row(site.label, facts_text, master, reachable, blocks or "-")
    return table


def tunnels_table(report: StatusReport) -> Table | None:
    """The worker-port path of every running or crashed run, per site."""
    rows = [(site.label, tunnel) for site in report.sites for tunnel in site.tunnels]
    if not rows:
        return None
    table = Table(title="tunnels of running and crashed runs", title_justify="left")
    for column in ("site", "run", "state", "port", "forward", "relay", "cert copy"):
        table.add_column(column, no_wrap=column == "run")
    for label, tunnel in rows:
        table.add_row(
            label,
            tunnel.run_id,
            _styled(tunnel.run_state, _STATE_STYLE.get(tunnel.run_state)),
            str(tunnel.port or "?"),
            "up" if tunnel.forward else "down",
            f"pid {tunnel.relay_pid}" if tunnel.relay_pid else "down",
            "yes" if tunnel.certs else "no",
        )
    return table


def blocks_table(report: StatusReport) -> Table | None:
    rows = [(site.label, job) for site in report.sites for job in site.blocks]
    if not rows:
        return None
    table = Table(title="blocks (parsl.* jobs of the site users)", title_justify="left")
    for column in ("site", "job", "name", "state", "run"):
        table.add_column(column, no_wrap=column == "run")
    for label, job in rows:
        table.add_row(
            label,
            escape(job.job_id),
            escape(job.name),
            escape(job.state),
            job.run_id or "(not this project)",
        )
    return table


def runs_table(report: StatusReport) -> Table:
    table = Table(title=f"last {len(report.runs)} runs", title_justify="left")
    for column in ("run", "workflow", "state", "exit", "duration", "sites"):
        table.add_column(column, no_wrap=column == "run")
    for run in report.runs:
        table.add_row(
            run.run_id,
            escape(os.path.basename(run.workflow)) if run.workflow else "?",
            _styled(run.state, _STATE_STYLE.get(run.state)),
            "" if run.exit_code is None else str(run.exit_code),
            _seconds(run.duration),
            escape(", ".join(run.labels)),
        )
    return table


def controller_table(report: StatusReport) -> Table | None:
    if not report.controller:
        return None
    table = Table(title="Parsl and ssh processes of runs, here", title_justify="left")
    for column in ("pid", "kind", "run", "command"):
        table.add_column(column)
    for proc in report.controller:
        table.add_row(str(proc.pid), proc.kind, escape(proc.run_id), escape(proc.command[:80]))
    return table


def print_status(report: StatusReport, console: Console | None = None) -> None:
    """The status as rich tables (sites, tunnels, blocks, runs, processes) on stdout."""
    out = console or Console(highlight=False)
    if report.sites:
        out.print(sites_table(report))
    else:
        out.print("no sites: no sites file and no facts in " + report.state_dir, markup=False)
    for table in (tunnels_table(report), blocks_table(report)):
        if table is not None:
            out.print(table)
    if report.runs:
        out.print(runs_table(report))
    else:
        out.print("no runs yet", markup=False)
    controller = controller_table(report)
    if controller is not None:
        out.print(controller)
    crashed = [run.run_id for run in report.runs if run.state == RunState.CRASHED]
    if crashed:
        out.print(
            f"crashed run(s) {', '.join(crashed)}: clean up with `pwgen teardown`", markup=False
        )


def run_tasks_table(run: RunTasks) -> Table:
    table = Table(title=f"run {run.run_id}: tasks per site", title_justify="left")
    columns = ("site", "tasks", "done", "failed", "tries", "moved in", "moved out")
    for column in (*columns, "median run", "max run"):
        table.add_column(column, justify="left" if column == "site" else "right")
    for site in run.sites:
        counts = (site.tasks, site.done, site.failed, site.tries, site.moved_in, site.moved_out)
        table.add_row(
            escape(site.site),
            *(str(n) for n in counts),
            _seconds(site.median_seconds),
            _seconds(site.max_seconds),
        )
    return table


def print_run_tasks(run: RunTasks, console: Console | None = None) -> None:
    """One run's per-site task table (from its monitoring database), and its moves."""
    out = console or Console(highlight=False)
    out.print(run_tasks_table(run))
    for (source, target), count in sorted(run.moves.items()):
        out.print(f"moved {source} -> {target}: {count} task(s)", markup=False)
    if run.unfinished:
        out.print(f"{run.unfinished} task(s) never finished", markup=False)
