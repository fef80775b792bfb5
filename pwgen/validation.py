"""One-line messages for pydantic validation errors (sites files, facts files).

Values are echoed bounded (`shown`, `clip`): a hostile file's 1 MB value, or a list
that aliases expand to a million items, must not become a 1 MB error line.
"""

import reprlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

SHOWN_CHARS = 60
MESSAGE_CHARS = 300

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = SHOWN_CHARS
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict = 2, 4, 4, 4


@dataclass(frozen=True)
class Problem:
    """The first validation error: where (`loc`, `path`), what, and how many more."""

    loc: tuple[Any, ...]
    path: str
    message: str
    more: str


def first_problem(err: ValidationError) -> Problem:
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] == "missing":
        message = "required key is missing"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] not in ("value_error", "assertion_error"):
            message += f" (got {shown(first['input'])})"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return Problem(loc, dotted(loc), clip(message), more)


def dotted(loc: tuple[Any, ...]) -> str:
    """`('sites', 0, 'env', 'method')` -> `sites[0].env.method`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` for a message, at most about `limit` characters, nesting cut short."""
    return clip(_repr.repr(value), limit)


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters, ending in `...` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
