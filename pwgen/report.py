"""Rich tables and warnings shown by the CLI (stdout for results, stderr for warnings)."""

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from pwgen.sites import Site

_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_sites(sites: Sequence[Site], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("label", "scheduler", "executor", "host", "user", "partition"):
        table.add_column(column)
    for site in sites:
        table.add_row(
            site.label,
            site.scheduler,
            site.executor,
            site.host or "this machine",
            site.user or "",
            site.partition or "",
        )
    _out.print(table)


def warn_skipped(skipped: Sequence[Any]) -> None:
    """One warning line listing clusters that did not become sites, and why."""
    if skipped:
        listed = ", ".join(f"{item.name} ({item.reason})" for item in skipped)
        _err.print(f"pwgen: warning: skipped {len(skipped)} cluster(s): {listed}", markup=False)
