"""Config files from the jinja2 templates in pwgen/lab/templates/, written only on change."""

import os
from pathlib import Path
from typing import Any

import jinja2

from pwgen.fileio import atomic_write


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pwgen.lab", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # config files, not HTML
    )


_ENV = _environment()


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write atomically unless the file already holds `text`; True when it was written."""
    try:
        if path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write(path, text, mode)
    return True


def make_dir(path: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)
