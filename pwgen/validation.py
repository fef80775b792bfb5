"""One-line messages for pydantic validation errors (sites files, facts files)."""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


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
            message += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return Problem(loc, dotted(loc), message, more)


def dotted(loc: tuple[Any, ...]) -> str:
    """`('sites', 0, 'env', 'method')` -> `sites[0].env.method`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text
