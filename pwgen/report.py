"""Rich tables and warnings shown by the CLI (stdout for results, stderr for warnings)."""

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from pwgen.sites import Site

if TYPE_CHECKING:
    from pwgen.provision import SiteReport

_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


#: Sites listed one per row; past this, the rest are summarised (a PW account may have
#: a thousand clusters).
MAX_SITE_ROWS = 20


def print_sites(sites: Sequence[Site], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("label", "scheduler", "executor", "host", "user", "partition"):
        table.add_column(column)
    for site in sites[:MAX_SITE_ROWS]:
        table.add_row(
            site.label,
            site.scheduler,
            site.executor,
            site.host or "this machine",
            site.user or "",
            site.partition or "",
        )
    _out.print(table)
    if len(sites) > MAX_SITE_ROWS:
        rest = sites[MAX_SITE_ROWS:]
        kinds = Counter(f"{site.scheduler}/{site.executor}" for site in rest)
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        _out.print(f"... and {len(rest)} more ({summary}); `--json` lists them all", markup=False)


def warn_skipped(skipped: Sequence[Any]) -> None:
    """One warning line listing clusters that did not become sites, and why."""
    if skipped:
        listed = ", ".join(f"{item.name} ({item.reason})" for item in skipped)
        _err.print(f"pwgen: warning: skipped {len(skipped)} cluster(s): {listed}", markup=False)


def progress_table(reports: Mapping[str, "SiteReport"]) -> Table:
    """One row per site while provisioning: its current task and counters."""
    table = Table(title="provisioning", title_justify="left")
    for column in ("site", "state", "ok", "changed", "current task"):
        table.add_column(column)
    for report in reports.values():
        style = {"failed": "red", "done": "green"}.get(report.state, "")
        table.add_row(
            report.label,
            f"[{style}]{report.state}[/]" if style else report.state,
            str(report.ok),
            str(report.changed),
            report.error or report.task,
        )
    return table


def summary_table(reports: Mapping[str, "SiteReport"]) -> Table:
    """After provisioning: what each site now runs."""
    table = Table(title="sites", title_justify="left")
    for column in ("site", "env", "parsl", "python", "partitions", "changed"):
        table.add_column(column)
    for report in reports.values():
        facts = report.facts or {}
        python = (facts.get("python") or {}).get("version", "")
        partitions = ", ".join(
            p.get("name", "") + ("*" if p.get("default") else "")
            for p in facts.get("partitions") or []
        )
        table.add_row(
            report.label,
            str(report.env.get("hash", "")),
            str(facts.get("parsl_version") or ""),
            str(python),
            partitions,
            str(report.changed) if not report.failed else "[red]failed[/]",
        )
    return table


def print_table(table: Table) -> None:
    _out.print(table)


def print_failures(reports: Mapping[str, "SiteReport"]) -> None:
    for report in reports.values():
        if report.failed:
            _err.print(f"pwgen: error: site {report.label}: {report.error}", markup=False)


def print_version_table(rows: Sequence[Any]) -> None:
    """Preflight's site x version table (rows: pwgen.preflight.SiteVersions), on stderr."""
    import pwgen_worker

    table = Table(title="versions", title_justify="left")
    columns = ("site", "parsl", "python", "helpers", "controller parsl", "controller python")
    for column in (*columns, ""):
        table.add_column(column)
    for row in rows:
        mark = "ok" if row.ok else "[red]MISMATCH[/]"
        found = (row.parsl, row.python, row.worker_helpers)
        table.add_row(row.label, *found, row.expected_parsl, row.expected_python, mark)
    table.caption = f"helpers: pwgen_worker, {pwgen_worker.__version__} expected on every site"
    _err.print(table)
