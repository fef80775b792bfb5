"""A picture of one run: `pwgen status --run ID --plot run.html` (or `.svg`).

One lane per site, time across. In each lane every try of a task is a bar from its
launch to its return: grey while it waited for a worker, then coloured by how it ended
(done, failed, or moved: a later try of the task ran on another site); an arrow joins
a moved task's try to its next one on the other site. A strip at the top of each lane
shows the site's blocks, pending and running. The page is one self-contained HTML
file (inline SVG, no script, no network), read from the run's monitoring database
(`pwgen run --monitor`). Labels are escaped: a site label never becomes markup.
"""

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from pwgen.fileio import atomic_write
from pwgen.parsl_internals import INTERNAL_EXECUTOR
from pwgen.status.tasks import DONE_STATES, MonitoringError, final_states, query_monitoring

COLOURS = {
    "waiting": "#c8c8c8",
    "done": "#2e9d4a",
    "failed": "#d33f3f",
    "moved": "#f0a020",
    "block pending": "#f5d76e",
    "block running": "#3b7dd8",
}
WIDTH, LANE_GAP, ROW, STRIP, LEFT = 1000, 24, 6, 8, 110
MAX_ROWS = 80
Span = tuple[str, float, float, str]  # site, from, to, "pending"/"running"
Point = tuple[float, float, float, str]  # x start, x end, y middle, outcome


@dataclass(frozen=True)
class TryBar:
    task_id: int
    site: str
    launched: float
    running: float | None
    returned: float
    outcome: str  # done, failed or moved


def plot_run(run_dir: Path, output: Path) -> str:
    """Write the run's picture to `output` (.html or .svg); returns what was drawn."""
    if output.suffix not in (".html", ".svg"):
        raise MonitoringError(f"{output}: the picture is written as .html or .svg")
    bars, blocks, sites = _read(run_dir)
    svg = _svg(bars, blocks, sites, run_dir.name)
    page = svg if output.suffix == ".svg" else _html(svg, run_dir.name)
    atomic_write(output, page)
    moved = sum(bar.outcome == "moved" for bar in bars)
    return f"{len(bars)} tries on {len(sites)} site(s), {moved} moved"


def _read(run_dir: Path) -> tuple[list[TryBar], list[Span], list[str]]:
    def read(conn: sqlite3.Connection) -> tuple[list[Any], dict[int, str], list[Any]]:
        tries = conn.execute(
            "SELECT task_id, task_executor, task_try_time_launched, task_try_time_running, "
            "task_try_time_returned FROM try ORDER BY task_id, try_id"
        ).fetchall()
        blocks = conn.execute(
            "SELECT executor_label, block_id, timestamp, status FROM block ORDER BY timestamp"
        ).fetchall()
        return tries, final_states(conn), blocks

    tries, finals, block_rows = query_monitoring(run_dir, read)
    tries = [t for t in tries if t[1] != INTERNAL_EXECUTOR and t[2]]
    if not tries:
        raise MonitoringError(f"run {run_dir.name}: no task ran on a site")
    start = min(_time(t[2]) for t in tries)
    bars = _bars(tries, finals, start)
    sites = sorted({bar.site for bar in bars})
    return bars, _block_spans(block_rows, start, max(b.returned for b in bars)), sites


def _bars(tries: list[tuple[Any, ...]], finals: dict[int, str], start: float) -> list[TryBar]:
    bars: list[TryBar] = []
    for index, (task_id, site, launched, running, returned) in enumerate(tries):
        follows = tries[index + 1] if index + 1 < len(tries) else None
        if follows is not None and follows[0] == task_id:
            outcome = "moved" if follows[1] != site else "failed"
        else:
            outcome = "done" if finals.get(task_id, "") in DONE_STATES else "failed"
        end = _time(returned) if returned else _time(launched)
        run_at = _time(running) - start if running else None
        bars.append(TryBar(task_id, site, _time(launched) - start, run_at, end - start, outcome))
    return bars


def _block_spans(rows: list[tuple[Any, ...]], start: float, end: float) -> list[Span]:
    """(site, from, to, "pending"/"running") for each block state until the next one."""
    spans: list[Span] = []
    current: dict[tuple[str, str], tuple[float, str]] = {}
    for site, block, stamp, status in rows:
        at = max(_time(stamp) - start, 0.0)
        previous = current.pop((site, block), None)
        if previous is not None and previous[1] in ("PENDING", "RUNNING"):
            spans.append((site, previous[0], at, previous[1].lower()))
        current[(site, block)] = (at, str(status))
    for (site, _), (at, state) in current.items():
        if state in ("PENDING", "RUNNING"):
            spans.append((site, at, end, state.lower()))
    return spans


def _time(value: str) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


def _svg(bars: list[TryBar], blocks: list[Span], sites: list[str], run: str) -> str:
    span = max(max(bar.returned for bar in bars), 1e-3)
    scale = (WIDTH - LEFT - 20) / span
    rows = {site: _rows([b for b in bars if b.site == site]) for site in sites}
    tops, y = {}, 40.0
    for site in sites:
        tops[site] = y
        y += STRIP + 4 + (max(rows[site].values(), default=0) + 1) * ROW + LANE_GAP
    parts = [f'<text x="10" y="20" class="title">run {escape(run)}: {len(bars)} tries</text>']
    parts += [f'<text x="10" y="{tops[s] + 12}" class="lane">{escape(s)}</text>' for s in sites]
    for site, begin, end, state in blocks:
        if site in tops:
            width = max((end - begin) * scale, 1)
            parts.append(_rect(LEFT + begin * scale, tops[site], width, STRIP, f"block {state}"))
    points: dict[int, list[Point]] = {}
    for bar in bars:
        top = tops[bar.site] + STRIP + 4 + rows[bar.site][bar] * ROW
        parts += _try_rects(bar, top, scale)
        x0, x1 = LEFT + bar.launched * scale, LEFT + bar.returned * scale
        points.setdefault(bar.task_id, []).append((x0, x1, top + ROW / 2, bar.outcome))
    parts += _move_lines(points)
    parts += [_axis(span, scale, y), _legend(y + 30)]
    return _document("\n".join(parts), y + 60)


def _try_rects(bar: TryBar, top: float, scale: float) -> list[str]:
    """The try's wait (grey) and its run (by outcome); a try that never ran before it
    ended (lost with its site, moved) is all in its outcome's colour."""
    x0, x1 = LEFT + bar.launched * scale, LEFT + bar.returned * scale
    title = f"task {bar.task_id}"
    if bar.running is None or bar.running > bar.returned:
        return [_rect(x0, top, max(x1 - x0, 2), ROW - 1, bar.outcome, title)]
    ran = LEFT + bar.running * scale
    return [
        _rect(x0, top, ran - x0, ROW - 1, "waiting", title),
        _rect(ran, top, max(x1 - ran, 2), ROW - 1, bar.outcome, title),
    ]


def _move_lines(points: dict[int, list[Point]]) -> list[str]:
    """An arrow from each moved try to the task's next try, on the other site."""
    lines = []
    for tries in points.values():
        for (_, end, y0, outcome), (begin, _, y1, _) in pairwise(tries):
            if outcome == "moved":
                lines.append(
                    f'<line class="move" x1="{end:.1f}" y1="{y0:.1f}" x2="{begin:.1f}" '
                    f'y2="{y1:.1f}" marker-end="url(#arrow)"/>'
                )
    return lines


def _rows(bars: list[TryBar]) -> dict[TryBar, int]:
    """Pack bars into rows, none overlapping another in its row (past MAX_ROWS rows,
    they share rows: a lane stays readable with thousands of tasks in flight)."""
    ends: list[float] = []
    placed = {}
    for bar in sorted(bars, key=lambda b: b.launched):
        free = [i for i, end in enumerate(ends) if end <= bar.launched]
        if free:
            row = free[0]
            ends[row] = bar.returned
        else:
            row = len(ends)
            ends.append(bar.returned)
        placed[bar] = row % MAX_ROWS
    return placed


def _rect(x: float, y: float, w: float, h: float, kind: str, title: str = "") -> str:
    colour = COLOURS[kind]
    title = title or kind
    return (
        f'<rect class="{kind.replace(" ", "-")}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
        f'height="{h}" fill="{colour}"><title>{escape(title)}: {kind}</title></rect>'
    )


def _axis(span: float, scale: float, y: float) -> str:
    step = next(s for s in (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 3600, 1e9) if span / s <= 12)
    ticks = [f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + span * scale:.1f}" y2="{y}" class="axis"/>']
    count = int(span / step) + 1
    for i in range(count):
        x = LEFT + i * step * scale
        ticks.append(f'<text x="{x:.1f}" y="{y + 14}" class="tick">{i * step:g} s</text>')
    return "\n".join(ticks)


def _legend(y: float) -> str:
    items = []
    for i, (kind, colour) in enumerate(COLOURS.items()):
        x = LEFT + i * 140
        items.append(
            f'<rect x="{x}" y="{y - 9}" width="12" height="10" fill="{colour}"/>'
            f'<text x="{x + 16}" y="{y}" class="tick">{kind}</text>'
        )
    return "\n".join(items)


def _document(body: str, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}">\n'
        '<defs><marker id="arrow" markerWidth="6" markerHeight="6" refX="5" refY="3" '
        'orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#555"/></marker></defs>\n'
        "<style>.title{font:bold 14px sans-serif}.lane{font:12px sans-serif}"
        ".tick{font:10px sans-serif}.axis{stroke:#555}.move{stroke:#555;stroke-width:1}</style>\n"
        f"{body}\n</svg>\n"
    )


def _html(svg: str, run: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>pwgen run {escape(run)}'
        f"</title></head>\n<body>\n{svg}</body></html>\n"
    )
