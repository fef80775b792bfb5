"""The `pwgen` command line: typer commands only, each calling one step of the data flow.

Exit codes: 0 success, 1 the workflow itself failed, 2 bad input (one line on
stderr, never a traceback), 130 interrupted.
"""

import importlib
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from pwgen import __version__
from pwgen.cli_options import (
    STATE,
    STATE_DIR,
    KnownHostsOption,
    SitesOption,
    load_site_list,
    trusted_known_hosts,
)
from pwgen.cli_sites import register_site_commands
from pwgen.cli_ssh import ssh_app
from pwgen.errors import PwgenError
from pwgen.failover.defaults import AVOID_AFTER, COOL_DOWN, QUEUE_WAIT
from pwgen.lab.cli import app as lab_app

#: `pwgen run --placement`: pwgen.placement, or Parsl's random pick.
Placement = Literal["capacity", "random"]


def _seconds(value: float) -> float:
    """A float option's value, refused when not finite: typer (click) takes 'nan' and
    'inf' for floats and its `min=` lets both through."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value


if TYPE_CHECKING:  # the CLI imports the steps lazily, to start fast
    from pwgen.provision import PlayOptions, SiteReport
    from pwgen.sites import Site
    from pwgen.ssh import SshSetup

app = typer.Typer(
    name="pwgen",
    help="Run one Parsl workflow across several HPC clusters at once.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
)
app.add_typer(lab_app, name="lab")
register_site_commands(app)
app.add_typer(ssh_app, name="ssh")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pwgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Run one Parsl workflow across several HPC clusters at once."""


@app.command()
def run(
    workflow: Annotated[Path, typer.Argument(help="The workflow script to run.")],
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments for the workflow (after --).")
    ] = None,
    sites: SitesOption = Path("sites.yaml"),
    failover: Annotated[
        bool,
        typer.Option(
            help="Move tasks off a failing site to another site their app allows "
            "(executors=[...] with several sites, or 'all')."
        ),
    ] = True,
    retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Retries of a task whose app raised (in place) [default: the config's; 0]",
            show_default=False,
        ),
    ] = None,
    queue_wait: Annotated[
        float,
        typer.Option(
            min=0,
            callback=_seconds,
            help="Seconds a site may keep tasks waiting with no worker connected before "
            "its tasks move elsewhere and its blocks are cancelled (0: no limit).",
        ),
    ] = QUEUE_WAIT,
    require_all_sites: Annotated[
        bool, typer.Option(help="Refuse to start when a site is unreachable.")
    ] = False,
    placement: Annotated[
        Placement,
        typer.Option(
            help="capacity: a task allowed on several sites goes to the one with room now; "
            "random: Parsl's own pick."
        ),
    ] = "capacity",
    avoid_after: Annotated[
        int, typer.Option(min=1, help="Avoid a site after this many site failures in a row.")
    ] = AVOID_AFTER,
    cool_down: Annotated[
        float,
        typer.Option(min=0, callback=_seconds, help="Seconds an avoided site is left alone."),
    ] = COOL_DOWN,
    monitor: Annotated[
        bool,
        typer.Option(
            help="Record every site's tasks in the run's Parsl monitoring database "
            "(`pwgen status --run ID` reads it)."
        ),
    ] = False,
    known_hosts: KnownHostsOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress and no summary line.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with a JSON report as stdout's last line.")
    ] = False,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Run with this Parsl config module (e.g. an edited `pwgen config` output) "
            "instead of generating one; failover, teardown and the run's records still apply.",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN_ID",
            help="Reuse the results of the tasks this (crashed) run of the workflow "
            "finished; tear it down first if it crashed. Only the other tasks run.",
        ),
    ] = None,
    checkpoint: Annotated[
        bool,
        typer.Option(help="Record each task's result as it ends, for a later --resume."),
    ] = True,
    rerun_app: Annotated[
        list[str] | None,
        typer.Option(
            "--rerun-app",
            metavar="APP",
            help="Never reuse this app's results (its function's name; repeatable).",
        ),
    ] = None,
) -> None:
    """Run a workflow on the sites; its apps name sites by label in executors=[...]."""
    if monitor:
        _require_monitoring()
    from pwgen.preflight import PreflightError, start_preflight, stop_preflight_masters
    from pwgen.report import print_version_table
    from pwgen.userfiles import check_workflow

    loaded = load_site_list(sites)
    check_workflow(workflow)
    remote = any(not site.is_local for site in loaded)
    trusted = trusted_known_hosts(sites, known_hosts) if remote else []  # no prompt
    # The sites answer the preflight while pwgen.run imports Parsl (half a second).
    preflight = start_preflight(loaded, STATE_DIR.resolve(), trusted, require_all_sites)
    try:
        from pwgen.run import RunOptions, run_workflow
    except BaseException:
        stop_preflight_masters(preflight, loaded)
        raise
    options = RunOptions(
        failover=failover,
        retries=retries,
        queue_wait=queue_wait or None,
        require_all_sites=require_all_sites,
        placement=placement,
        avoid_after=avoid_after,
        cool_down=cool_down,
        monitor=monitor,
        config_file=config_file.resolve() if config_file else None,
        progress="quiet" if quiet else ("live" if sys.stderr.isatty() else "lines"),
        json_report=as_json,
        checkpoint=checkpoint,
        resume=resume,
        rerun_apps=tuple(rerun_app or ()),
    )
    try:
        code = run_workflow(
            workflow, args or [], loaded, sites, STATE_DIR, options, trusted, preflight
        )
    except PreflightError as err:
        if err.rows:
            print_version_table(err.rows)
        raise
    raise typer.Exit(code)


def _require_monitoring() -> None:
    """`--monitor` needs Parsl monitoring's SQLAlchemy, an extra: say so before any site
    is touched (without it Parsl's MonitoringHub raises only after the sites' preflight)."""
    try:
        importlib.import_module("sqlalchemy")
    except ImportError as err:
        raise PwgenError(
            f"--monitor needs SQLAlchemy ({err.msg}): pip install 'pwgen[monitoring]' "
            "(pipx: pipx inject pwgen 'parsl[monitoring]')"
        ) from None


@app.command()
def provision(
    sites: SitesOption = Path("sites.yaml"),
    limit: Annotated[
        list[str] | None, typer.Option("--limit", help="Only this site (repeatable).")
    ] = None,
    known_hosts: KnownHostsOption = None,
    accept_new_host_keys: Annotated[
        bool,
        typer.Option(help="Record unknown host keys on first contact (changed keys still fail)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Report what would change; change nothing.")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show what files would change.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Ansible's output (-vv: more).")
    ] = 0,
) -> None:
    """Install the pinned Parsl env, relay and Flux on every site and gather its facts."""
    from pwgen.provision import PlayOptions
    from pwgen.provision import provision as run_provision
    from pwgen.ssh import prepare_ssh

    chosen = select_sites(load_site_list(sites), limit or [])
    trusted = trusted_known_hosts(sites, known_hosts)
    ssh = prepare_ssh(chosen, STATE_DIR, trusted, accept_new_host_keys)
    options = PlayOptions(check=check, diff=diff, verbosity=verbose)
    if as_json:
        reports = run_provision(chosen, STATE_DIR, ssh, options=options)
        typer.echo(json.dumps({label: asdict(r) for label, r in reports.items()}, indent=2))
    else:
        reports = _provision_with_progress(chosen, ssh, options)
    if any(report.failed for report in reports.values()):
        raise typer.Exit(1)


def _provision_with_progress(
    chosen: "list[Site]", ssh: "SshSetup", options: "PlayOptions"
) -> "dict[str, SiteReport]":
    """Provision with a live per-site table, then the summary and any failures."""
    from rich.live import Live

    from pwgen.provision import provision as run_provision
    from pwgen.report import print_failures, print_table, progress_table, summary_table

    # With -v, Ansible's own output scrolls by: no table redrawn over it.
    with Live(refresh_per_second=8, transient=True, auto_refresh=not options.verbosity) as live:
        reports = run_provision(
            chosen,
            STATE_DIR,
            ssh,
            on_update=lambda r: live.update(progress_table(r)),
            options=options,
        )
    print_table(summary_table(reports))
    print_failures(reports)
    return reports


def select_sites(all_sites: "list[Site]", labels: list[str]) -> "list[Site]":
    """The sites named by --limit (all when none), refusing unknown labels."""
    known = {site.label for site in all_sites}
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise PwgenError(f"--limit {unknown[0]}: no such site (sites: {', '.join(sorted(known))})")
    return [site for site in all_sites if not labels or site.label in labels]


@app.command()
def status(
    sites: Annotated[
        Path | None,
        typer.Option(
            "--sites",
            "-s",
            help="Sites file (YAML); default: sites.yaml if present, else the sites with facts.",
            envvar="PWGEN_SITES",
        ),
    ] = None,
    last: Annotated[int, typer.Option("--last", "-n", help="How many runs to show.")] = 10,
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="One run's tasks per site (a run made with --monitor)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="With --run: draw the run (sites, tasks over time, moves, blocks) "
            "as a self-contained .html page or an .svg.",
        ),
    ] = None,
) -> None:
    """Sites (facts, ssh master, tunnels, blocks) and the last runs of this project."""
    from pwgen.status import gather_status, print_status, status_json

    if plot is not None and run_id is None:
        raise typer.BadParameter("--plot draws one run: give it with --run ID")
    if run_id is not None:
        _run_tasks(run_id, as_json, plot)
        return

    if sites is None and Path("sites.yaml").is_file():
        sites = Path("sites.yaml")
    report = gather_status(STATE_DIR, load_site_list(sites) if sites else None, last)
    if as_json:
        typer.echo(json.dumps(status_json(report), indent=2))
    else:
        print_status(report)


def _run_tasks(run_id: str, as_json: bool, plot: Path | None = None) -> None:
    from pwgen.status.plot import plot_run
    from pwgen.status.render import print_run_tasks
    from pwgen.status.tasks import read_run_tasks, run_tasks_json

    if not run_id or "/" in run_id or run_id.startswith("."):
        raise typer.BadParameter(f"{run_id!r} is not a run id (`pwgen status` lists the runs)")
    if plot is not None:
        drawn = plot_run(STATE.run(run_id).path, plot)
        typer.echo(f"wrote {plot}: {drawn}")
        return
    tasks = read_run_tasks(STATE.run(run_id).path)
    if as_json:
        typer.echo(json.dumps(run_tasks_json(tasks), indent=2))
    else:
        print_run_tasks(tasks)


@app.command()
def teardown(
    run_id: Annotated[
        str | None, typer.Option("--run", help="Only this run (default: every crashed run).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Clean up after a crashed run: its interchange here; blocks, relays, certs on the sites."""
    from pwgen.teardown import print_teardown, teardown_json
    from pwgen.teardown import teardown as run_teardown

    report = run_teardown(STATE_DIR, run_id)
    if as_json:
        typer.echo(json.dumps(teardown_json(report), indent=2))
    else:
        print_teardown(report)
    raise typer.Exit(0 if report.clean else 1)


def main() -> None:
    """Console entry point: maps every user error to one line and an exit code."""
    try:
        # Without standalone mode click returns the code of `typer.Exit` instead of exiting.
        code = app(standalone_mode=False)
    except PwgenError as err:
        _fail(str(err), err.exit_code)
    except typer.TyperException as err:  # typer >= 0.27.2: the base of its (click's) errors
        ctx = getattr(err, "ctx", None)  # usage errors (exit code 2) know their command
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        _fail(f"{err.format_message()}{hint}", err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.echo(f"pwgen: error: {' '.join(message.split())}", err=True)
    sys.exit(code)
