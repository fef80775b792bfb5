"""Rendering a teardown report as JSON and rich tables."""

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pwgen.teardown.model import TeardownReport


def teardown_json(report: TeardownReport) -> dict[str, Any]:
    data = asdict(report)
    data["clean"] = report.clean
    return data


def teardown_table(report: TeardownReport) -> Table:
    table = Table(title="teardown", title_justify="left")
    for column in ("run", "where", "action", "result"):
        table.add_column(column, no_wrap=column == "run")
    for action in report.actions:
        result = "ok" if action.ok else "[red]FAILED[/]"
        detail = f" {escape(action.detail)}" if action.detail else ""
        table.add_row(
            escape(action.run_id or "-"), escape(action.where), escape(action.what), result + detail
        )
    return table


def print_teardown(report: TeardownReport, console: Console | None = None) -> None:
    """What teardown did (a table), what it left alone, and the runs marked torn down."""
    out = console or Console(highlight=False)
    if report.actions:
        out.print(teardown_table(report))
    else:
        out.print("nothing to tear down", markup=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False)
    if report.torn_down:
        out.print(f"torn down: {', '.join(report.torn_down)}", markup=False)
