"""The run's monitoring database in SQLite's WAL mode, so a controller killed at any
moment leaves it whole (a commit is in the database or in its `-wal` file, which the
next reader replays); the mode is a property of the file, set before Parsl opens it."""

import sqlite3
from pathlib import Path

from pwgen.errors import OutputError


def prepare_monitoring_db(path: Path) -> None:
    """Create `path` (if new) with journal_mode=WAL."""
    try:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    except sqlite3.Error as err:
        raise OutputError(f"{path}: cannot prepare the monitoring database: {err}") from None
